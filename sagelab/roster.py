"""Classroom mode: a roster CSV turns into one isolated, cost-guarded environment per student.

    student_id,email[,account_id,region]
    alice,alice@example.edu
    bob,bob@example.edu,123456789012,eu-west-1

Rows without `account_id` share the admin's account (names are namespaced per student); rows with
one get their own account (deployed from the admin's account: `cdk bootstrap --trust ADMIN`).
Any email address a school may issue is valid (apostrophes, plus-addressing, capitals, subdomains):
it goes as it is to the budget alerts, and into the `owner` tag with the characters AWS tag values
do not allow replaced by `_` (`O'Brien@x.edu` -> `O_Brien@x.edu`).
Every problem is reported with the roster's line number, e.g.
    roster.csv line 4: student id 'Bob_1' is not valid (expected lowercase letters, digits and single hyphens (not `--`), ending with a letter or digit, at most 20 characters)
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sagelab.config import (
    ACCOUNT_PATTERN,
    EMAIL_PATTERN,
    REGION_PATTERN,
    ClassroomConfig,
    ConfigError,
    SageLabConfig,
    as_tag_value,
    check_environment,
    replace_checked,
)
from sagelab.naming import CLASS_ID, ID_RULE, ResourceNames, is_student_id

# Ids a student may not take, with why: each would make a student's stacks (sagelab-<id>--platform,
# --serving) or tags stand for something that is not that student's.
RESERVED_STUDENT_IDS = {
    CLASS_ID: "it is kept for class-wide resources",
    "admin": "it is kept for the course admins",
    "template": "it is kept for the classroom's template environments",
    "q9stamp9student9id9q": "it is the placeholder stamped into every student's template",
}
REQUIRED_COLUMNS = ("student_id", "email")
OPTIONAL_COLUMNS = ("account_id", "region")


@dataclass(frozen=True)
class Student:
    student_id: str
    email: str
    account_id: str | None
    region: str | None
    line: int


def read_roster(path: str | Path) -> list[Student]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"-c roster={path}: file not found")
    text = path.read_text(encoding="utf-8-sig")
    return parse_roster(text, str(path))


def parse_roster(text: str, label: str = "roster.csv") -> list[Student]:
    if not text.strip():
        raise ConfigError(f"{label} is empty; expected a header line student_id,email[,account_id,region] and one row per student")
    reader = csv.reader(io.StringIO(text))
    rows = _rows(reader, label)
    header = [cell.strip().lower() for cell in next(rows)]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        problem = f"missing column(s) {missing}" if missing else f"unknown column(s) {unknown}"
        raise ConfigError(f"{label} line 1: header {header}: {problem} (expected student_id,email[,account_id,region])")
    students: list[Student] = []
    seen: dict[str, int] = {}
    for row in rows:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ConfigError(f"{label} line {line}: {len(row)} value(s) for {len(header)} column(s) {header}")
        values = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
        student_id = values["student_id"]
        if not is_student_id(student_id):
            raise ConfigError(f"{label} line {line}: student id {student_id!r} is not valid (expected {ID_RULE})")
        if student_id in seen:
            raise ConfigError(f"{label} line {line}: student id {student_id!r} duplicates line {seen[student_id]}")
        seen[student_id] = line
        email = values["email"]
        if not EMAIL_PATTERN.match(email):
            raise ConfigError(f"{label} line {line}: email {email!r} is not valid (expected name@domain)")
        account = values.get("account_id") or None
        if account is not None and not ACCOUNT_PATTERN.match(account):
            raise ConfigError(f"{label} line {line}: account id {account!r} is not valid (expected 12 digits, or empty for the shared account)")
        region = values.get("region") or None
        if region is not None and not REGION_PATTERN.match(region):
            raise ConfigError(f"{label} line {line}: region {region!r} is not valid (expected an AWS region like us-east-1, or empty)")
        students.append(Student(student_id=student_id, email=email, account_id=account, region=region, line=line))
    if not students:
        raise ConfigError(f"{label} has a header but no students; add one row per student")
    return students


def _rows(reader: Any, label: str) -> Iterator[list[str]]:
    """The reader's rows; a row the csv module cannot read (a value over its field size limit,
    an unclosed quote at the end of the file) becomes a ConfigError naming its line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problem = str(error)
            if "field larger than field limit" in problem:
                problem = f"a value is longer than {csv.field_size_limit()} characters (expected a student id, an email, an account id and a region)"
            raise ConfigError(f"{label} line {reader.line_num}: not a valid roster row: {problem}") from None
        yield row


def classroom_config(config: SageLabConfig, students: list[Student], label: str = "roster.csv") -> SageLabConfig:
    """One environment per student: the config's first environment as the template, the
    classroom guardrails applied, names and tags namespaced by the student id."""
    base = config.environments[0]
    classroom = config.classroom
    environments = []
    environment_names = {env.name for env in config.environments}
    portal_role = _class_portal_role_arn(classroom, students, base.account, base.region)
    for student in students:
        _check_not_taken(student, environment_names, label)
        env = replace_checked(
            base,
            f"{label} line {student.line}",
            f"student {student.student_id}",
            name=student.student_id,
            account=student.account_id or base.account,
            shares_account_with_class=student.account_id is None,
            class_portal_role_arn=portal_role if student.account_id is not None else None,
            account_log_groups=False,  # account-wide: one per account, never one per student
            region=student.region or base.region,
            owner=as_tag_value(student.email),
            student_email=student.email,
            course=classroom.course,
            budget_usd=classroom.budget_usd,
            budget_alert_emails=tuple(dict.fromkeys((student.email, *classroom.admin_emails))),
            allowed_instance_types=classroom.allowed_instance_types or base.allowed_instance_types,
            scratch_expiry_days=min(base.scratch_expiry_days, classroom.scratch_expiry_days),
            notebook=dataclasses.replace(base.notebook, idle_timeout_minutes=classroom.notebook_idle_minutes, volume_size_gb=classroom.notebook_volume_gb),
            serving=dataclasses.replace(base.serving, mode=classroom.serving_mode, waf=_student_waf(classroom, student), monitoring="class"),
        )
        problems = check_environment(env, f"student {student.student_id}")
        if problems:
            path, value, expected = problems[0]
            raise ConfigError(f"{label} line {student.line}: {path}: {value!r} is not valid (expected {expected})")
        environments.append(env)
    return dataclasses.replace(config, environments=tuple(environments))


def _class_portal_role_arn(classroom: ClassroomConfig, students: list[Student], class_account: str | None, class_region: str) -> str | None:
    """The class portal's function role, which own-account students' portal roles trust. The portal
    is in the class stack of the first shared-account row's region (stacks/app/builder.py); with no
    class stack (no shared-account row, or `waf` not shared) or no class account in the config to
    name, there is none, and the page says that those notebooks open from the student's console."""
    shared_regions = [student.region or class_region for student in students if student.account_id is None]
    if classroom.waf != "shared" or not shared_regions or class_account is None:
        return None
    return f"arn:aws:iam::{class_account}:role/{ResourceNames.of('class').portal_function_role(shared_regions[0])}"


def _student_waf(classroom: ClassroomConfig, student: Student) -> Literal["own", "shared", "off"]:
    """The class's web ACL for students in the class account; their own only if the config asks."""
    if student.account_id is None:
        return classroom.waf
    return "own" if classroom.own_account_waf else "off"


def _check_not_taken(student: Student, environment_names: set[str], label: str) -> None:
    """A student id may not be an environment's name: in a shared account, student `dev` would get
    the stacks `sagelab-dev--platform`/`--serving` and overwrite the platform team's environment.
    Ids that only extend one another (`dev` and `dev-kowal`) are fine: no scope reaches the other's
    names (`sagelab.naming`)."""
    student_id = student.student_id
    if student_id in environment_names:
        raise ConfigError(
            f"{label} line {student.line}: student id {student_id!r} is the name of an environment in the config "
            f"(its stacks {ResourceNames.of(student_id).pattern()} would be replaced); choose another id"
        )
    if student_id in RESERVED_STUDENT_IDS:
        raise ConfigError(f"{label} line {student.line}: student id {student_id!r} is reserved ({RESERVED_STUDENT_IDS[student_id]}); choose another id")
