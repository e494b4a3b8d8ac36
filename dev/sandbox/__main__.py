"""Run the sandbox on its own: `python -m dev.sandbox [--host 127.0.0.1] [--port 8001]`.

Point the service at it with TIKTOK_API_BASE_URL=http://127.0.0.1:8001/open_api/.
"""

from __future__ import annotations

import argparse

import uvicorn

from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import BULK_CODE_COUNT, BULK_CODE_FAMILY, DEMO_CODES, OWN_VIDEO_ITEM_ID, bulk_code, own_post

# The few codes worth showing at start-up; the README lists them all.
_SHOWN = (
    "#SBX+video/30d=",
    "#SBX+carousel/30d=",
    "#SBX+expired/error=",
    "#SBX+post/banned=",
    "#SBX+duet/secondary=",
    "#SBX+duet/original=",
    "#SBX+fault/rate-limited=",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dev.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--slow-seconds", type=float, default=30.0, help="how long #SBX+fault/slow= and #SBX+authorize/times-out= wait"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every TikTok call, as a TikTok that far away would"
    )
    args = parser.parse_args(argv)

    print(f"TikTok sandbox on http://{args.host}:{args.port}/open_api/ (any Access-Token works)")
    print("Some demo codes (all of them are in the README):")
    for demo in DEMO_CODES:
        if demo.code in _SHOWN:
            print(f"  {demo.code:<28} {demo.description}")
    print(
        f"  {BULK_CODE_FAMILY:<28} {BULK_CODE_COUNT:,} valid public videos for batches, "
        f"{bulk_code(0)} to {bulk_code(BULK_CODE_COUNT - 1)}"
    )
    shown = own_post(OWN_VIDEO_ITEM_ID)
    print("An own post (no code; identity/video/info/, the README lists them all):")
    print(
        f"  identity_type={shown.identity.identity_type} identity_id={shown.identity.identity_id} "
        f"item_id={shown.item_id}: {shown.description}"
    )
    # access_log off: uvicorn's access log prints the query string, which holds the creator's code.
    sandbox = create_sandbox_app(slow_seconds=args.slow_seconds, latency_seconds=args.latency_ms / 1000)
    uvicorn.run(sandbox, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
