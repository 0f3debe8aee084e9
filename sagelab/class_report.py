"""Where each student of a class is and what they spend: the columns `sagelab class report` adds to
each student's links, and the self-contained HTML page an admin can open or share.

Per student, from the student's own account and region: the notebook's status and since when,
whether an endpoint exists, the last pipeline run and its result, and the budget's spend against
its limit. From the admin's (payer) account, in one Cost Explorer call for the whole class:
month-to-date spend by the `student` cost-allocation tag. A value that cannot be read says why
(`n/a: ...`) and the rest of the report is still written.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sagelab.aws_ops import AwsOperations, OperationError, translate
from sagelab.naming import ResourceNames

STATUS_COLUMNS = (
    "notebook_status",
    "notebook_since",
    "endpoint",
    "last_run",
    "last_run_status",
    "spend_month_to_date_usd",
    "budget_limit_usd",
    "budget_used_percent",
)
STUDENT_TAG = "student"


def _read(read: Callable[[], str]) -> str:
    try:
        return read()
    except OperationError as error:
        text = str(error)
        # SageMaker says ValidationException "Could not find ..."; Budgets NotFoundException "... doesn't exist".
        if any(sign in text.lower() for sign in ("does not exist", "doesn't exist", "not found", "notfound", "could not find")):
            return "none"
        return f"n/a: {text}"


def _timestamp(value: Any) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, dt.datetime) else str(value or "")


def student_status(ops: AwsOperations, student_id: str, account_id: str | None) -> dict[str, str]:
    """The per-student columns read from the student's account (spend is filled in by class_spend)."""
    names = ResourceNames.of(student_id)
    row: dict[str, str] = dict.fromkeys(STATUS_COLUMNS, "")

    def notebook() -> str:
        described = translate(ops.sagemaker.describe_notebook_instance, NotebookInstanceName=names.notebook)
        row["notebook_since"] = _timestamp(described.get("LastModifiedTime"))
        return str(described["NotebookInstanceStatus"])

    def endpoint() -> str:
        return str(translate(ops.sagemaker.describe_endpoint, EndpointName=names.endpoint)["EndpointStatus"])

    def last_run() -> str:
        summaries = translate(ops.sagemaker.list_pipeline_executions, PipelineName=names.pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=1)[
            "PipelineExecutionSummaries"
        ]
        if not summaries:
            return "none"
        row["last_run_status"] = str(summaries[0].get("PipelineExecutionStatus", ""))
        return _timestamp(summaries[0].get("StartTime"))

    def budget() -> str:
        account = account_id or translate(ops.client("sts").get_caller_identity)["Account"]
        described = translate(ops.client("budgets").describe_budget, AccountId=account, BudgetName=names.budget)["Budget"]
        limit = float(described["BudgetLimit"]["Amount"])
        spent = float(described.get("CalculatedSpend", {}).get("ActualSpend", {}).get("Amount", 0))
        row["budget_used_percent"] = f"{100 * spent / limit:.0f}" if limit else ""
        return f"{limit:.2f}"

    row["notebook_status"] = _read(notebook)
    row["endpoint"] = _read(endpoint)
    row["last_run"] = _read(last_run)
    row["budget_limit_usd"] = _read(budget)
    return row


def class_spend(cost_explorer: Any, today: dt.date) -> dict[str, float] | str:
    """Month-to-date unblended cost per value of the `student` tag (every page), or why it cannot be read."""
    start = today.replace(day=1)
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": (today + dt.timedelta(days=1)).isoformat()},
        "Granularity": "MONTHLY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [{"Type": "TAG", "Key": STUDENT_TAG}],
    }
    spend: dict[str, float] = {}
    try:
        while True:
            answer = translate(cost_explorer.get_cost_and_usage, **request)
            for period in answer.get("ResultsByTime", []):
                for group in period.get("Groups", []):
                    student = group["Keys"][0].split("$", 1)[-1]
                    spend[student] = spend.get(student, 0.0) + float(group["Metrics"]["UnblendedCost"]["Amount"])
            if not answer.get("NextPageToken"):
                return spend
            request["NextPageToken"] = answer["NextPageToken"]
    except OperationError as error:
        return f"n/a: {error}"


def add_spend(rows: Sequence[dict[str, str]], spend: Mapping[str, float] | str) -> None:
    for row in rows:
        if isinstance(spend, str):
            row["spend_month_to_date_usd"] = spend
        else:
            row["spend_month_to_date_usd"] = f"{spend.get(row['student_id'], 0.0):.2f}"


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def write_html(rows: Sequence[Mapping[str, str]], columns: Sequence[str], path: Path, title: str, generated: dt.datetime) -> None:
    """One file, no scripts or external assets: a bar chart of spend per student and the table."""
    bar_height, gap, label_width, chart_width = 18, 6, 120, 420
    spends = [(row["student_id"], _number(row.get("spend_month_to_date_usd", ""))) for row in rows]
    largest = max((amount for _, amount in spends if amount), default=0.0) or 1.0
    bars = []
    for position, (student, amount) in enumerate(spends):
        y = position * (bar_height + gap)
        width = 0 if amount is None else chart_width * amount / largest
        text = "n/a" if amount is None else f"${amount:,.2f}"
        bars.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">{html.escape(student)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar_height}" fill="#3b6ea5"><title>{html.escape(text)}</title></rect>'
            f'<text x="{label_width + width + 6:.1f}" y="{y + 13}">{html.escape(text)}</text>'
        )
    svg_height = max(1, len(rows)) * (bar_height + gap)
    header = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(column, '')))}</td>" for column in columns) + "</tr>" for row in rows)
    path.write_text(
        f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#eee}}svg text{{font-size:12px}}</style></head>
<body><h1>{html.escape(title)}</h1><p>Generated {html.escape(generated.strftime("%Y-%m-%d %H:%M UTC"))}; spend is month to date by the
<code>student</code> cost-allocation tag (Cost Explorer lags by up to a day).</p>
<h2>Spend per student</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + chart_width + 90}" height="{svg_height}" role="img" aria-label="spend per student">{"".join(bars)}</svg>
<h2>Students</h2><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></body></html>
""",
        encoding="utf-8",
    )


def add_status(classroom: Any, students: Sequence[Any], rows: Sequence[dict[str, str]], today: dt.date) -> None:
    """Fill the status columns of `rows` (one per student, from ClassroomOperations.report)."""

    @functools.cache
    def class_account() -> str | None:
        """The admin's (class) account, asked of STS once for every shared-account student; None
        makes student_status say why the budget cannot be read."""
        try:
            return str(translate(classroom.admin.client("sts").get_caller_identity)["Account"])
        except OperationError:
            return None

    def account_of(student: Any) -> str | None:
        return str(student.account_id) if student.account_id is not None else class_account()

    for student, row in zip(students, rows, strict=True):
        if row["status"] == "deployed":
            row.update(student_status(classroom.ops_for(student), student.student_id, account_of(student)))
        else:
            row.update(dict.fromkeys(STATUS_COLUMNS, ""))
    add_spend(rows, class_spend(classroom.admin.client("ce"), today))
