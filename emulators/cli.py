"""Command line: ``python -m emulators serve --state-dir DIR``."""

from __future__ import annotations

import argparse
import logging
import sys

from emulators.common.tenant import TenantFileError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve Entra ID, ARM and DPS emulators over HTTPS")
    s.add_argument("--state-dir", required=True, help="where the CA, keys and state live")
    s.add_argument("--tenant", default=None, help="tenant JSON file (default: the demo tenant)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--entra-port", type=int, default=0, help="0 = any free port")
    s.add_argument("--arm-port", type=int, default=0)
    s.add_argument(
        "--dps-port",
        type=int,
        default=0,
        help="port of the first DPS instance; the next ones follow",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from emulators.common.server import EmulatorStack

    try:
        stack = EmulatorStack(
            args.state_dir,
            tenant_file=args.tenant,
            host=args.host,
            entra_port=args.entra_port,
            arm_port=args.arm_port,
            dps_port=args.dps_port,
        )
    except (TenantFileError, OSError) as exc:
        print(f"emulators: {exc}", file=sys.stderr)
        return 2
    ctx = stack.ctx
    print(f"Entra ID  {ctx.authority}", flush=True)
    print(f"ARM       {ctx.arm_url}", flush=True)
    for name, host in ctx.dps_hosts.items():
        print(f"DPS       https://{host}  ({name})", flush=True)
    print(f"endpoints {stack.state_dir.resolve() / 'endpoints.json'}", flush=True)
    try:
        stack.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
