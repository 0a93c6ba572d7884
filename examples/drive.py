"""Drive a banditops deployment through the Python client: predict, give feedback with the
true label, watch the versions and events, then roll a version back and reinstate it.

    python examples/drive.py --url http://127.0.0.1:8000 --requests 200

Made for examples/config.toml (deployment ``churn``, features ``age`` and ``plan``, labels
"no"/"yes"); the keys are read from environment variables, never from the command line
(where other users of the machine could read them).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_models, next to this file

from make_models import customers

from banditops.client import Client, ServiceError


def key(variable: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise SystemExit(f"error: set {variable} to an API key (see examples/README.md)")
    return value


def show_versions(client: Client, deployment: str) -> list[dict]:
    versions = client.deployment(deployment)["versions"]
    for v in versions:
        mean = "-" if v["reward_mean"] is None else f"{v['reward_mean']:.3f}"
        print(f"  {v['name']}: {v['status']}, traffic share {v['traffic_share']:.2f}, "
              f"{v['decisions']} decisions, {v['feedbacks']} feedbacks, reward mean {mean}")
    return versions


def show_events(client: Client, deployment: str, since: int = 0) -> int:
    """Print the events from ``since``; returns the next sequence number to ask for."""
    for event in client.events(deployment, since=since, limit=1000):
        print(f"  #{event['seq']} {event['kind']} {event['version'] or ''}: {event['reason']}")
        since = event["seq"] + 1
    return since


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: BANDITOPS_CLIENT_KEY=... BANDITOPS_ADMIN_KEY=... python "
        "examples/drive.py --url http://127.0.0.1:8000")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="The service.")
    parser.add_argument("--deployment", default="churn")
    parser.add_argument("--key-env", default="BANDITOPS_CLIENT_KEY",
                        help="Environment variable holding a client key.")
    parser.add_argument("--admin-key-env", default="BANDITOPS_ADMIN_KEY",
                        help="Environment variable holding an admin key.")
    parser.add_argument("--requests", type=int, default=200, help="Customers to predict.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    name = args.deployment
    try:
        with Client(args.url, key(args.key_env)) as client, \
                Client(args.url, key(args.admin_key_env), timeout=60) as admin:
            print(f"deployment {name}:")
            show_versions(client, name)

            rows, labels = customers(args.requests, seed=args.seed)
            instances = rows.to_dict("records")
            decisions = client.predict_many(name, instances)  # batches of max_batch
            served: dict[str, int] = {}
            for decision in decisions:
                served[decision["version"]] = served.get(decision["version"], 0) + 1
            print(f"predicted {len(decisions)} customers: "
                  + ", ".join(f"{v} {n}" for v, n in sorted(served.items())))

            # ... later, the truth is known: one label per decision
            results = client.feedback_many(
                name, [(d["decision_id"], str(label))
                       for d, label in zip(decisions, labels, strict=True)])
            recorded = sum(r["status"] == "recorded" for r in results)
            print(f"feedback: {recorded} of {len(results)} recorded")

            print("versions:")
            versions = show_versions(client, name)
            print("events:")
            since = show_events(client, name)

            live = [v["name"] for v in versions if v["status"] == "live"]
            if len(live) < 2:
                print(f"only {live} live: nothing to roll back without leaving none")
                return 0
            target = live[-1]
            answer = admin.rollback(name, target, "rolled back by hand (examples/drive.py)")
            print(f"rolled back {target}: {answer['status']}")
            answer = admin.reinstate(name, target, "reinstated by hand (examples/drive.py)")
            print(f"reinstated {target}: {answer['status']}")
            print("new events:")
            show_events(client, name, since)
            print("versions:")
            show_versions(client, name)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
