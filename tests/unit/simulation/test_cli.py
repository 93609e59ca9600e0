"""The `demo` and `whatif` sub-commands of `homecare` parse as documented."""

from __future__ import annotations

from services.cli import build_parser
from services.simulation.whatif import POLICIES


def test_whatif_default_policies_are_all_known():
    """Every policy `homecare whatif` replays by default exists, baseline first."""
    args = build_parser().parse_args(["whatif", "var/demo/run"])
    names = args.policies.split(",")
    assert names[0] == "baseline" and set(names) == set(POLICIES)


def test_demo_defaults_and_headless_options():
    """`homecare demo` defaults to a served district of seed 1; CI options parse."""
    parser = build_parser()
    args = parser.parse_args(["demo"])
    assert (args.headless, args.size, args.seed, args.url) == (False, "district", 1, None)
    args = parser.parse_args(["demo", "--headless", "--size", "small", "--seed", "3"])
    assert (args.headless, args.size, args.seed) == (True, "small", 3)
