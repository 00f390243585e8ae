"""The `deeplens` commands that work on the databases, one module per noun. Every read command
takes --json; long work shows a progress bar on stderr; query commands take --backend."""

from deeplens.connectors.cli.cleanup import apply_command, plan_command, undo_command
from deeplens.connectors.cli.duplicates import duplicates_command
from deeplens.connectors.cli.explain import explain_command
from deeplens.connectors.cli.report import report_command
from deeplens.connectors.cli.scan import scan_command
from deeplens.connectors.cli.schema import schema_group
from deeplens.connectors.cli.search import search_command
from deeplens.connectors.cli.stats import stats_command
from deeplens.connectors.cli.storage import storage_group

COMMANDS = [schema_group, storage_group, scan_command, search_command, duplicates_command, explain_command, stats_command,
            plan_command, apply_command, undo_command, report_command]
