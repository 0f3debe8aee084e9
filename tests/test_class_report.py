"""`sagelab class report`: per student, notebook status and since when, endpoint, last pipeline run,
month-to-date spend by the student tag and budget use, in the CSV and a self-contained HTML page.
AWS control-plane calls go to moto in server mode; the page is checked by parsing it."""

from __future__ import annotations

import csv
import datetime as dt
import json
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from sagelab.class_report import class_spend
from sagelab.cli import main
from tests.test_classroom import _deploy_student, admin_session

ACCOUNT = "123456789012"


class Page(HTMLParser):
    """The parts of the report page a person reads: table cells by row, bar labels, external refs."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.bar_titles: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._in_svg = self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "img") or any((v or "").startswith("http") for k, v in attrs if k in ("src", "href")):
            self.external.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self._in_svg = True
        elif tag == "title" and self._in_svg:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "title":
            self._in_title = False
        elif tag == "svg":
            self._in_svg = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_title:
            self.bar_titles.append(data)


def _working_student(url: str, student: str, spent: str) -> None:
    """A student with an endpoint, one finished pipeline run and a budget partly used."""
    session = admin_session()
    _deploy_student(session, url, student, with_model=True)
    sagemaker = session.client("sagemaker", endpoint_url=url)
    role = f"arn:aws:iam::{ACCOUNT}:role/sm"
    sagemaker.create_model(ModelName=f"{student}-model", ExecutionRoleArn=role, PrimaryContainer={"Image": "xgb:1"})
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{student}-config",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": f"{student}-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
    )
    sagemaker.create_endpoint(EndpointName=f"sagelab-{student}--endpoint", EndpointConfigName=f"{student}-config")
    sagemaker.create_pipeline(PipelineName=f"sagelab-{student}--pipeline", PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}), RoleArn=role)
    sagemaker.start_pipeline_execution(PipelineName=f"sagelab-{student}--pipeline")
    session.client("budgets", endpoint_url=url).create_budget(
        AccountId=ACCOUNT,
        Budget={
            "BudgetName": f"sagelab-{student}--monthly",
            "BudgetLimit": {"Amount": "50", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
            "CalculatedSpend": {"ActualSpend": {"Amount": spent, "Unit": "USD"}},
        },
    )


def _cost_explorer_answers(url: str, spend: dict[str, str]) -> None:
    groups = [{"Keys": [f"student${student}"], "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}} for student, amount in spend.items()]
    body = json.dumps({"results": [{"ResultsByTime": [{"TimePeriod": {"Start": "2026-11-01", "End": "2026-11-26"}, "Groups": groups}]}]})
    request = urllib.request.Request(f"{url}/moto-api/static/ce/cost-and-usage-results", data=body.encode(), method="POST")
    with urllib.request.urlopen(request) as answer:  # moto's own API on 127.0.0.1
        assert answer.status == 201


def test_report_shows_where_each_student_is_and_what_they_spend(
    moto_url: str, tmp_path: Path, moto_environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _working_student(moto_url, "gina", spent="12.50")
    _deploy_student(admin_session(), moto_url, "hal", with_model=False)
    _cost_explorer_answers(moto_url, {"gina": "12.3456", "hal": "0.4"})
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,email\ngina,gina@x.edu\nhal,hal@x.edu\nivy,ivy@x.edu\n")
    output = tmp_path / "report.csv"

    assert main(["class", "report", "--roster", str(roster), "--output", str(output), "--endpoint-url", moto_url]) == 0
    page_path = tmp_path / "report.html"
    assert capsys.readouterr().out.strip() == f"wrote {output} and {page_path}: 3 students, 2 deployed"

    rows = {row["student_id"]: row for row in csv.DictReader(output.open())}
    gina, hal, ivy = rows["gina"], rows["hal"], rows["ivy"]
    assert (gina["notebook_status"], gina["endpoint"], gina["last_run_status"]) == ("InService", "InService", "Succeeded")
    assert gina["notebook_since"].endswith(" UTC") and gina["last_run"].endswith(" UTC")
    assert (gina["spend_month_to_date_usd"], gina["budget_limit_usd"], gina["budget_used_percent"]) == ("12.35", "50.00", "25")
    # hal deployed but has not trained, served or been given a budget yet: each says so.
    assert (hal["notebook_status"], hal["endpoint"], hal["last_run"], hal["budget_limit_usd"]) == ("InService", "none", "none", "none")
    assert hal["spend_month_to_date_usd"] == "0.40"
    # ivy is not deployed: no status to read, and no spend.
    assert (ivy["status"], ivy["notebook_status"], ivy["spend_month_to_date_usd"]) == ("not deployed", "", "0.00")

    page = Page()
    page.feed(page_path.read_text())
    header, *table = page.rows
    assert header[:2] == ["student_id", "email"] and "spend_month_to_date_usd" in header
    assert [row[0] for row in table] == ["gina", "hal", "ivy"]
    assert table[0][header.index("budget_used_percent")] == "25"
    assert page.bar_titles == ["$12.35", "$0.40", "$0.00"]
    assert page.external == []  # self-contained: opens offline, can be mailed


def test_spend_reads_every_page_and_says_why_when_it_cannot() -> None:
    cost_explorer = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    today = dt.date(2026, 11, 25)
    expected = {
        "TimePeriod": {"Start": "2026-11-01", "End": "2026-11-26"},
        "Granularity": "MONTHLY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [{"Type": "TAG", "Key": "student"}],
    }

    def page(student: str, amount: str) -> dict[str, object]:
        return {"ResultsByTime": [{"Groups": [{"Keys": [f"student${student}"], "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}}]}]}

    with Stubber(cost_explorer) as stub:
        stub.add_response("get_cost_and_usage", {**page("kim", "1.5"), "NextPageToken": "two"}, expected)
        stub.add_response("get_cost_and_usage", page("lee", "2.25"), {**expected, "NextPageToken": "two"})
        assert class_spend(cost_explorer, today) == {"kim": 1.5, "lee": 2.25}
        stub.add_client_error("get_cost_and_usage", "DataUnavailableException", "Cost Explorer is not enabled for this account", expected_params=expected)
        assert class_spend(cost_explorer, today) == "n/a: DataUnavailableException: Cost Explorer is not enabled for this account"
