"""HTML pages of the Entra emulator: sign-in, error, signed out, form_post relay.

Every value is HTML-escaped; pages are not cacheable, not frameable, and carry a CSP that
allows only the one inline script of the form_post relay (by nonce).
"""

from __future__ import annotations

import html
import secrets

from starlette.responses import HTMLResponse

_STYLE = """
body{font-family:"Segoe UI",system-ui,sans-serif;background:#f2f2f2;margin:0}
main{max-width:440px;margin:8vh auto;background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;font-weight:600;margin:0 0 16px}
.tenant{color:#555;font-size:.9rem;margin-bottom:20px}
label{display:block;margin:12px 0 4px}
input[type=text],input[type=email],input[type=password]{width:100%;box-sizing:border-box;
 padding:6px 0;border:0;border-bottom:1px solid #666;font-size:1rem}
button{margin-top:24px;background:#0067b8;color:#fff;border:0;padding:8px 32px;font-size:1rem}
.error{color:#e81123;margin:12px 0}
.note{color:#555;font-size:.85rem;margin-top:24px}
code{word-break:break-all}
"""


def _page(
    title: str, body: str, *, status: int = 200, script_nonce: str | None = None
) -> HTMLResponse:
    script_src = f"'nonce-{script_nonce}'" if script_nonce else "'none'"
    doc = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(
        doc,
        status_code=status,
        headers={
            "Cache-Control": "no-store, no-cache",
            "Pragma": "no-cache",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'unsafe-inline'; script-src {script_src}; "
                "base-uri 'none'; frame-ancestors 'none'"
            ),
        },
    )


def signin_page(
    *,
    action: str,
    txn: str,
    tenant_name: str,
    app_name: str,
    username: str = "",
    error: str | None = None,
) -> HTMLResponse:
    """Render the username/password form posting to ``action`` with the transaction id."""
    e = html.escape
    err = (
        f'<div class=error id=signin-error role=alert data-testid="signin-error">{e(error)}</div>'
        if error
        else ""
    )
    body = f"""
<h1>Sign in</h1>
<div class=tenant>{e(tenant_name)} &middot; to continue to <strong>{e(app_name)}</strong></div>
{err}
<form method=post action="{e(action)}" autocomplete=off>
<input type=hidden name=ctx value="{e(txn)}">
<label for=login>Email, phone, or Skype</label>
<input type=email id=login name=login value="{e(username)}" required autofocus
 data-testid="signin-username">
<label for=passwd>Password</label>
<input type=password id=passwd name=passwd required data-testid="signin-password">
<button type=submit id=idSIButton9 data-testid="signin-submit">Sign in</button>
</form>
<p class=note>Entra ID emulator &mdash; demo users and passwords are listed in endpoints.json.</p>
"""
    return _page("Sign in to your account", body)


def error_page(code: int, message: str, *, status: int = 400) -> HTMLResponse:
    """Render an error the browser sees when the redirect URI cannot be trusted."""
    e = html.escape
    body = f"""
<h1>Sorry, but we're having trouble signing you in.</h1>
<div class=error data-testid="entra-error">AADSTS{code}: {e(message)}</div>
"""
    return _page("Sign in error", body, status=status)


def signed_out_page(note: str | None = None) -> HTMLResponse:
    extra = f"<p class=note>{html.escape(note)}</p>" if note else ""
    body = f"""
<h1>You signed out of your account</h1>
<p data-testid="signed-out">It's a good idea to close all browser windows.</p>{extra}
"""
    return _page("Signed out", body)


def form_post_page(action: str, fields: dict[str, str]) -> HTMLResponse:
    """Render the auto-submitting form of ``response_mode=form_post``."""
    e = html.escape
    inputs = "".join(f'<input type=hidden name="{e(k)}" value="{e(v)}">' for k, v in fields.items())
    nonce = secrets.token_urlsafe(16)
    body = f"""
<h1>Working&hellip;</h1>
<form method=post action="{e(action)}" id=relay>{inputs}
<noscript><button type=submit>Continue</button></noscript></form>
<script nonce="{nonce}">document.getElementById("relay").submit();</script>
"""
    return _page("Working...", body, script_nonce=nonce)
