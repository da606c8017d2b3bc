# One image for web, worker, beat and the demo emulators.
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
RUN mkdir -p vendor/bootstrap vendor/htmx \
 && cp node_modules/bootstrap/dist/css/bootstrap.min.css node_modules/bootstrap/dist/css/bootstrap.min.css.map \
       node_modules/bootstrap/dist/js/bootstrap.bundle.min.js node_modules/bootstrap/dist/js/bootstrap.bundle.min.js.map \
       vendor/bootstrap/ \
 && cp node_modules/htmx.org/dist/htmx.min.js vendor/htmx/

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORTAL_VAR_DIR=/var/lib/dps-portal
WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=assets /src/vendor static/vendor
# collectstatic as production runs: the manifest storage writes staticfiles.json (without it every
# page fails with DEBUG off). The settings need a secret key to load; this placeholder exists only
# for this one command and is not in the image's environment.
RUN useradd --system --home /var/lib/dps-portal portal && mkdir -p /var/lib/dps-portal \
 && chown portal /var/lib/dps-portal \
 && DJANGO_SECRET_KEY=collectstatic-build-step-only-not-a-runtime-secret python manage.py collectstatic --no-input -v 0
USER portal
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
