"""Prometheus metrics of the portal: ``/metrics`` (see docs/operations.md, "Metrics").

Every figure is read at scrape time from what all processes share: the database (jobs, the
fleet index, certificates) and Redis (counters of DPS calls, the rate-limit buckets), so one
scrape of any web process is right however many web and worker processes run, on however
many hosts. :mod:`portal.metrics.recorder` writes the counters, :mod:`portal.metrics.collector`
reads everything, :mod:`portal.metrics.views` serves it behind a bearer token.
"""
