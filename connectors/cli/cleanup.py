"""`deeplens plan`, `deeplens apply`, `deeplens undo`: reclaim the bytes duplicates waste, safely.

plan writes what would happen (connectors/cleanup/plan.py), apply does it after re-verifying every
file, undo puts it all back. apply and undo then scan the locations they touched, so Weaviate (and
Elasticsearch) follow exactly as after any scan; scans skip the quarantine (an exclude pattern
that `storage add` and apply put on every location).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import click
from rich.table import Table

from deeplens.connectors import registry
from deeplens.connectors.cleanup import keep
from deeplens.connectors.cleanup.apply import apply_plan
from deeplens.connectors.cleanup.files import (
    QUARANTINE_EXCLUDE,
    BadQuarantine,
    quarantine_excludes,
)
from deeplens.connectors.cleanup.journal import journal_path
from deeplens.connectors.cleanup.plan import (
    ACTIONS,
    DEFAULT_TIERS,
    TIERS,
    BadPlan,
    Plan,
    load,
    make_plan,
    save,
    summary,
)
from deeplens.connectors.cleanup.undo import BadJournal, undo_journal
from deeplens.connectors.cli.common import (
    backend_option,
    echo_json,
    find_duplicates,
    human_size,
    out,
    progress,
    query_backend,
    settings,
    weaviate_database,
)
from deeplens.connectors.queries import grouping
from deeplens.schema.models import StorageLocation

def _tiers(value: str) -> list[str]:
    tiers = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise click.BadParameter(f"tiers are a comma-separated list of {', '.join(TIERS)}", param_hint="--tiers")
    return tiers


@click.command("plan")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the plan here (JSON), for `deeplens apply`. Without it: the summary only.")
@click.option("--tiers", default=",".join(DEFAULT_TIERS), show_default=True,
              help=f"Which copies to act on: a comma-separated list of {', '.join(TIERS)}.")
@click.option("--action", type=click.Choice(ACTIONS), default="quarantine", show_default=True,
              help="quarantine: move into .deeplens-quarantine/<plan id>/ in the same storage (undo restores), "
                   "or into --quarantine; delete: for good; hardlink: exact copies on one local file system become "
                   "hard links.")
@click.option("--quarantine", "quarantine", metavar="URL",
              help="Quarantine into <URL>/<plan id>/<location>/ instead: a folder on the same storage (protocol, "
                   "server, account) as every location quarantined from; opened with that location's options and "
                   "credentials. Scans skip it.")
@click.option("--keep", "keep_rules", default=",".join(keep.DEFAULT_RULES), show_default=True,
              help="Keep rules, first decides: " + ", ".join(keep.RULES) + ".")
@click.option("--prefer-location", "prefer", multiple=True, metavar="NAME",
              help="Keep copies in this location first, after reference locations (repeatable, in order).")
@click.option("--location", "locations", multiple=True, help="Only groups within these locations (repeatable).")
@click.option("--max-distance", default=grouping.DEFAULT_MAX_DISTANCE, show_default=True,
              help="near: most pHash bits (of 64) that may differ.")
@click.option("--max-semantic-distance", default=grouping.DEFAULT_MAX_SEMANTIC_DISTANCE, show_default=True,
              help="derived: most cosine distance of a candidate that verification then checks.")
@click.option("--list", "show_groups", is_flag=True, help="Also list every group: the kept copy and each action.")
@click.option("--workers", default=8, show_default=True, help="Concurrent file reads.")
@click.option("--json", "as_json", is_flag=True)
@backend_option
def plan_command(out_path, tiers, action, keep_rules, prefer, locations, max_distance, max_semantic_distance,
                 show_groups, workers, as_json, backend, quarantine) -> None:
    """Plan a cleanup: for each duplicate group the copy to keep and an action for every other copy.

    Every file of every group is read once, so the plan records what is on the storage now
    (size, modification time, etag, sha256); `deeplens apply` checks each file against it again.
    The quarantine is part of the plan (not an apply option), so that the plan that is reviewed
    says where files go, and an apply resumed after a crash and undo look in the same place.
    """
    tiers = _tiers(tiers)
    if quarantine and action != "quarantine":
        raise click.BadParameter(f"a quarantine is for --action quarantine, not {action}", param_hint="--quarantine")
    try:
        rules = keep.parse_rules(keep_rules)
    except keep.BadRules as exc:
        raise click.BadParameter(str(exc), param_hint="--keep") from None
    with weaviate_database() as client:
        registered = {loc.name: loc for loc in registry.list_locations(client)}
    unknown = [name for name in (*prefer, *locations) if name not in registered]
    if unknown:
        raise click.BadParameter(f"no storage location named {', '.join(unknown)}; see `deeplens storage list`")
    with query_backend(backend) as (queries, modules), progress() as bar:
        groups = find_duplicates(bar, queries, modules, tiers != ["exact"], list(locations) or None, max_distance,
                                 max_semantic_distance).groups
        read = bar.add_task("reading the copies", total=None)
        try:
            plan = make_plan(groups, registered, tiers=tiers, action=action, rules=rules, prefer_locations=prefer,
                             quarantine=quarantine, workers=workers, on_total=lambda t: bar.update(read, total=t),
                             on_done=lambda n: bar.advance(read, n))
        except BadPlan as exc:
            raise click.ClickException(str(exc)) from None
    if out_path:
        save(plan, out_path)
    facts = summary(plan)
    if as_json:
        echo_json({"plan": str(out_path) if out_path else None, **facts,
                   "left_out": [entry.model_dump() for entry in plan.left_out]})
        return
    if show_groups:
        print_groups(plan)
    print_summary(plan, facts)
    if out_path:
        click.echo(f"Plan {plan.id} written to {out_path}. Review or edit it, then: deeplens apply {out_path} --yes")


def print_groups(plan: Plan) -> None:
    for number, group in enumerate(plan.groups, 1):
        click.echo(f"group {number} ({group.kind}): keep {group.keep.uri}  [{group.keep_rule}]")
        for action in group.actions:
            click.echo(f"  {action.action:<10} {action.tier:<7} {human_size(action.size_bytes):>9}  {action.uri}")


def print_summary(plan: Plan, facts: dict) -> None:
    table = Table("location", "tier", "files", "bytes to reclaim", title=f"plan {plan.id}: {', '.join(plan.tiers)}")
    for row in facts["rows"]:
        table.add_row(row["location"], row["tier"], str(row["files"]), human_size(row["bytes"]))
    table.add_row("total", "", str(facts["files"]), human_size(facts["bytes"]), style="bold")
    out.print(table)
    if plan.left_out:
        click.echo(f"{len(plan.left_out)} copies left out (reasons in the plan's left_out, or --json).")


def _registered() -> dict[str, StorageLocation]:
    with weaviate_database() as client:
        return {loc.name: loc for loc in registry.list_locations(client)}


def _rescan(ctx: click.Context, names: set[str], registered: dict[str, StorageLocation]) -> list[dict]:
    """Scan the touched locations, as `deeplens scan NAME...` does, so the index follows the files."""
    from deeplens.connectors.cli.scan import scan_command

    if not names:
        return []
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):  # its JSON becomes part of this command's answer
        ctx.invoke(scan_command, names=tuple(sorted(names)), scan_all=False, show_errors=False, workers=8,
                   as_json=True)
    return json.loads(captured.getvalue())


def _exclude_quarantine(plan: Plan, registered: dict[str, StorageLocation]) -> None:
    """Keep scans out of the plan's quarantine: the default pattern on its locations, and a plan
    --quarantine's folder on every registered location it lies in."""
    try:
        custom = quarantine_excludes(plan.quarantine, registered) if plan.quarantine else {}
    except BadQuarantine as exc:
        raise click.ClickException(f"{exc}; then make a new plan") from None
    with weaviate_database() as client:
        for name in sorted(set(plan.locations) | set(custom)):
            location = registry.get_location(client, name)
            missing = [p for p in (QUARANTINE_EXCLUDE, custom.get(name)) if p and p not in location.exclude]
            if missing:
                location.exclude = [*location.exclude, *missing]
                registry.save_location(client, location)


@click.command("apply")
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Act. Without it, show what would happen and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The journal path and the counts, as JSON.")
@click.option("--workers", default=8, show_default=True,
              help="Groups applied at once (the actions of one group in order; 1 on SFTP).")
@click.pass_context
def apply_command(ctx, plan_file: Path, yes: bool, as_json: bool, workers: int) -> None:
    """Apply a plan from `deeplens plan --out`, re-verifying every file and its kept copy first.

    Changed, moved or deleted files are skipped with the reason; a group whose kept copy changed
    is left alone. Every action goes to a journal (data dir, and beside the quarantine), which
    `deeplens undo` reverses. Running it again resumes an interrupted apply.
    """
    registered = _registered()
    try:
        plan = load(plan_file, registered)
    except BadPlan as exc:
        raise click.ClickException(str(exc)) from None
    if not yes:
        if as_json:
            echo_json({"plan_id": plan.id, "applied": False, **summary(plan)})
            return
        print_groups(plan)
        print_summary(plan, summary(plan))
        click.echo(f"Nothing was changed. To do this: deeplens apply {plan_file} --yes")
        return
    _exclude_quarantine(plan, registered)
    with progress() as bar:
        task = bar.add_task("applying", total=len(plan.actions()))
        try:
            result = apply_plan(plan, registered, settings().data_dir, workers=workers,
                                on_done=lambda n: bar.advance(task, n))
        except BadPlan as exc:
            raise click.ClickException(str(exc)) from None
    scans = _rescan(ctx, result.locations, registered)
    if as_json:
        echo_json({"plan_id": plan.id, "applied": True, **result.as_json(), "scans": scans})
        return
    _echo_problems(result.skipped, result.failed)
    click.echo(f"{result.done} done ({human_size(result.bytes_reclaimed)} reclaimed), {result.already_done} done before, "
               f"{len(result.skipped)} skipped, {len(result.failed)} failed. Journal: {result.journal}")
    click.echo(f"Undo with: deeplens undo {result.journal}")
    if result.failed:
        raise click.ClickException("some actions failed (above); fix the cause and apply again: it resumes")


@click.command("undo")
@click.argument("journal", metavar="JOURNAL")
@click.option("--json", "as_json", is_flag=True)
@click.option("--workers", default=8, show_default=True, help="Files restored at once (1 on SFTP).")
@click.pass_context
def undo_command(ctx, journal: str, as_json: bool, workers: int) -> None:
    """Undo what a journal records (a journal path, or a plan id): quarantined files back in place,
    hard links back to independent files, each verified by sha256. Safe to run again."""
    path = Path(journal)
    if not path.exists() and "/" not in journal:
        path = journal_path(settings().data_dir, journal)
    registered = _registered()
    try:
        result = undo_journal(path, registered, workers=workers)
    except BadJournal as exc:
        raise click.ClickException(str(exc)) from None
    scans = _rescan(ctx, result.locations, registered)
    if as_json:
        echo_json({**result.as_json(), "scans": scans})
        return
    _echo_problems(result.skipped, result.failed)
    click.echo(f"{result.restored} restored, {result.already_in_place} already in place, {len(result.skipped)} skipped, "
               f"{len(result.failed)} failed.")
    if result.failed:
        raise click.ClickException("some files could not be restored (above); fix the cause and undo again")


def _echo_problems(skipped: list[dict], failed: list[dict]) -> None:
    for entry in skipped:
        click.echo(f"skipped {entry['uri']}: {entry['reason']}")
    for entry in failed:
        click.echo(f"FAILED  {entry['uri']}: {entry['error']}", err=True)
