"""What the role check recorded: every denial, and each role's grants that no
call used, with the template's reason for keeping them.

    .venv/bin/python infra/local/gate/report.py [DIR]    (DIR: $GATE_REPORT_DIR, else .local/gate)

Reads every denials-PORT.jsonl and usage-PORT.json in DIR (one pair per moto
the gate ran in front of). Exits 1 if any call was denied; unused grants are
printed, never fatal.

A grant kept though no local call uses it is justified on the resource that
owns the role (the function, the state machine, or the AWS::IAM::Role):

    Metadata:
      UnusedPermissions:
        "s3:ListMultipartUploadParts": "why it stays"            # every resource of the action
        "sqs:SendMessage !GetAtt WorkDeadLetterQueue.Arn": "why"  # one resource, as the report names it
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gate import iam  # noqa: E402
else:
    from . import iam

DEFAULT_DIR = iam.ROOT / ".local" / "gate"


def read(directory: Path):
    denials, usage, files = [], set(), 0
    for path in sorted(directory.glob("denials-*.jsonl")):
        files += 1
        for line in path.read_text().splitlines():
            if line.strip():
                denials.append(json.loads(line))
    for path in sorted(directory.glob("usage-*.json")):
        files += 1
        try:
            usage |= {tuple(u) for u in json.loads(path.read_text())}
        except ValueError:
            print(f"gate report: {path} is not JSON (written while read?)", file=sys.stderr)
    return denials, usage, files


def justification(template: iam.Template, unit) -> str | None:
    role, policy, _index, action, resource = unit
    reasons = template.justifications(role)
    for key in (f"{action} {resource}", action):
        if key in reasons:
            return str(reasons[key])
    managed = iam.MANAGED_POLICIES.get(policy)
    if managed:
        for pattern, why in managed["why"].items():
            if iam.glob_match(pattern, action, ignore_case=True):
                return f"{why} (AWS managed {policy}, attached by SAM)"
    return None


def never_usable(unit) -> str:
    """A grant no call can ever use, whatever the code does."""
    action, resource = unit[3], unit[4]
    if action.lower().startswith("dynamodb:") and "/index/" in resource \
            and action.split(":", 1)[1].lower() not in ("query", "scan", "*"):
        return " (no call can use it: only Query and Scan act on an index)"
    return ""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    directory = Path(argv[0] if argv else os.environ.get("GATE_REPORT_DIR") or DEFAULT_DIR)
    denials, usage, files = read(directory)
    print(f"== The role check (infra/local/gate), records in {directory}")
    if not files:
        print("no records: no call went through the gate (or GATE_IAM=off)")
        return 0

    template = iam.Template()
    used_keys = {(u[0], u[1], u[2], u[3], u[4]) for u in usage}
    print("-- grants no recorded call used, per role:")
    for role, units in sorted(template.all_units().items(), key=lambda item: template.owner.get(item[0], item[0])):
        unused = [u for u in dict.fromkeys(units) if u not in used_keys]
        if not unused:
            continue
        print(f"{template.owner.get(role, role)} ({role}):")
        # One line per statement, resource and reason: "a, b on R: why".
        lines = defaultdict(list)
        for unit in unused:
            why = justification(template, unit) or "NOT JUSTIFIED" + never_usable(unit)
            lines[(unit[1], unit[2], unit[4], why)].append(unit[3])
        for (_policy, _index, resource, why), actions in lines.items():
            print(f"  {', '.join(actions)} on {resource}: {why}")
        stale = [key for key in template.justifications(role)
                 if not any(key in (u[3], f"{u[3]} {u[4]}") for u in unused)]
        for key in stale:
            print(f"  (UnusedPermissions names {key!r}, which calls used or the role no longer grants)")

    if not denials:
        print("-- no call was denied")
        return 0
    groups = defaultdict(list)
    for d in denials:
        groups[(d.get("function"), d.get("action"), d.get("resource"), d.get("reason"), d.get("note", ""))].append(d)
    print(f"-- DENIED: {len(denials)} call(s); on AWS each would fail")
    for (function, action, resource, reason, note), items in sorted(groups.items(), key=lambda g: g[1][0]["time"]):
        times = sorted(d["time"] for d in items)
        calls = sorted({d.get("call", "") for d in items})
        when = times[0] if len(times) == 1 else f"{times[0]} .. {times[-1]}, {len(times)} times"
        extra = f" [{note}]" if note else ""
        keys = sorted({k for d in items for k in d.get("leading_keys", [])})
        if keys:
            extra += f" leading keys {keys[:5]}{' ...' if len(keys) > 5 else ''}"
        print(f"DENIED {function}: {action} on {resource} ({', '.join(calls)}; {when}; stacks "
              f"{', '.join(sorted({d.get('stack', '?') for d in items}))}){extra}: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
