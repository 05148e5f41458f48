"""The gRPC face of the dunning service: proto in, handler in a worker thread, proto out.

Bad fields are collected (every one reported at once, nothing written) before a
handler runs; errors raised anywhere are ``ReckonError``s the kit's interceptor maps
to rich statuses. Mutations take ``request_id``: policies replay by content (the
same document is the same version) and RunDunning by date (a date has one run), so
a repeat answers as the first did without a separate key table lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date
from typing import Any

from google.type import date_pb2

from reckon.dunning.v1 import dunning_pb2 as pb
from reckon.dunning.v1 import dunning_pb2_grpc
from services.common.errors import NotFound, Violations
from services.common.money import Money
from services.common.proto_convert import (
    decode_page_token,
    encode_page_token,
    money_to_proto,
    page_size_from_proto,
    timestamp_to_proto,
)
from services.dunning.domain.model import Behaviour, InvoiceOutcome
from services.dunning.service_layer import handlers, runs
from services.dunning.service_layer.policy_document import problems_of
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork, Run, StoredPolicy

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DunningService"].full_name
MAX_REQUEST_ID = 128


def date_to_proto(value: date | None) -> date_pb2.Date | None:
    return (
        None if value is None else date_pb2.Date(year=value.year, month=value.month, day=value.day)
    )


def date_from_proto(message: date_pb2.Date, field: str, violations: Violations) -> date | None:
    if message.year == 0 and message.month == 0 and message.day == 0:
        return None
    try:
        return date(message.year, message.month, message.day)
    except ValueError as exc:
        violations.add(field, f"not a calendar date: {exc}")
        return None


MAX_ID = 64


def _id(value: str, field: str, violations: Violations, *, required: bool = False) -> None:
    """Ids and codes: at most 64 printable characters (PostgreSQL refuses NUL in text)."""
    if required and not value:
        violations.add(field, "required")
    elif len(value) > MAX_ID or any(ord(c) < 32 or ord(c) == 127 for c in value):
        violations.add(field, f"not an id: at most {MAX_ID} printable characters")


def _request_id(value: str, violations: Violations) -> None:
    if len(value) > MAX_REQUEST_ID:
        violations.add("request_id", f"at most {MAX_REQUEST_ID} characters")


def policy_to_proto(stored: StoredPolicy) -> pb.Policy:
    policy = stored.policy
    return pb.Policy(
        code=policy.code,
        version=policy.version,
        name=policy.name,
        level_count=len(policy.levels),
        group_ids=sorted(policy.groups),
        reseller_ids=sorted(policy.resellers),
        is_default=policy.is_default,
        document=stored.document,
        create_time=timestamp_to_proto(stored.create_time),
    )


def run_to_proto(run: Run) -> pb.DunningRun:
    return pb.DunningRun(
        run_id=run.run_id,
        run_date=date_to_proto(run.run_date),
        state=pb.RUN_STATE_COMPLETED if run.state == "COMPLETED" else pb.RUN_STATE_RUNNING,
        accounts_total=run.accounts_total,
        accounts_done=run.accounts_done,
        accounts_escalated=run.accounts_escalated,
        start_time=timestamp_to_proto(run.start_time),
        end_time=timestamp_to_proto(run.end_time),
    )


_STATES = {
    "ACTIVE": pb.CASE_STATE_ACTIVE,
    "PAUSED": pb.CASE_STATE_PAUSED,
    "ENDED": pb.CASE_STATE_ENDED,
}


def case_to_proto(view: handlers.CaseView) -> pb.DunningAccount:
    account, facts = view.account, view.facts
    currency = account.currency or (facts.amount_overdue.currency if facts.amount_overdue else "")
    message = pb.DunningAccount(
        account_id=account.account_id,
        customer_id=account.customer_id,
        level=account.level,
        level_name=view.level.name if view.level else "",
        days_past_due=facts.days_past_due,
        unpaid_invoices=facts.unpaid_invoices,
        next_step=view.next_level.name if view.next_level else "",
        next_step_date=date_to_proto(view.next_date),
        state=_STATES.get(str(account.state), pb.CASE_STATE_UNSPECIFIED),
        policy_code=account.policy_code,
        policy_version=account.policy_version,
        group_id=account.group_id,
        reseller_id=account.reseller_id,
    )
    if facts.amount_overdue is not None:
        message.amount_overdue.CopyFrom(money_to_proto(facts.amount_overdue))
    elif currency:
        message.amount_overdue.CopyFrom(money_to_proto(Money.zero(currency)))
    if currency:
        message.amount_disputed.CopyFrom(money_to_proto(Money.of(facts.disputed_overdue, currency)))
    return message


def behaviour_to_proto(customer_id: str, record: Behaviour) -> pb.PaymentBehaviour:
    return pb.PaymentBehaviour(
        customer_id=customer_id,
        invoices=record.invoices,
        paid_on_time=record.paid_on_time,
        paid_late=record.paid_late,
        overdue=record.overdue,
        average_days_late=str(record.average_days_late),
        failed_attempts=record.failed_attempts,
        highest_level=record.highest_level,
        score=record.score,
        grade=record.grade,
    )


def outcome_to_proto(outcome: InvoiceOutcome) -> pb.InvoiceOutcome:
    return pb.InvoiceOutcome(
        invoice_id=outcome.invoice_id,
        account_id=outcome.account_id,
        total=money_to_proto(Money.of(outcome.total, outcome.currency)),
        due_date=date_to_proto(outcome.due_date),
        paid_date=date_to_proto(outcome.paid_on),
        outcome=outcome.outcome.value,
        days_late=outcome.days_late,
        failed_attempts=outcome.failed_attempts,
        highest_level=outcome.highest_level,
        fees_charged=money_to_proto(Money.of(outcome.fees_charged, outcome.currency)),
    )


class DunningServicer(dunning_pb2_grpc.DunningServiceServicer):
    def __init__(
        self,
        uow_factory: Callable[[], DunningUnitOfWork],
        *,
        run_started: Callable[[], None] | None = None,
        run_hour: int = runs.DEFAULT_RUN_HOUR,
    ) -> None:
        self._uow_factory = uow_factory
        self._run_started = run_started
        # A run asked on demand stands for the same instant as the scheduler's of that date.
        self._run_hour = run_hour

    async def CheckPolicy(
        self, request: pb.CheckPolicyRequest, context: Any
    ) -> pb.CheckPolicyResponse:
        problems = await asyncio.to_thread(problems_of, request.document)
        return pb.CheckPolicyResponse(
            violations=[
                pb.PolicyViolation(field=p.field, description=p.description) for p in problems
            ]
        )

    async def ApplyPolicy(
        self, request: pb.ApplyPolicyRequest, context: Any
    ) -> pb.ApplyPolicyResponse:
        violations = Violations()
        _request_id(request.request_id, violations)
        violations.raise_if_any()
        stored = await asyncio.to_thread(
            handlers.apply_policy, self._uow_factory(), request.document, request.request_id
        )
        return pb.ApplyPolicyResponse(policy=policy_to_proto(stored))

    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: Any
    ) -> pb.ListPoliciesResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        violations.raise_if_any()
        after = (cursor or {}).get("after", "")
        stored = await asyncio.to_thread(handlers.list_policies, self._uow_factory())
        page = [s for s in stored if s.policy.code > after][:size]
        more = len([s for s in stored if s.policy.code > after]) > size
        token = encode_page_token({"after": page[-1].policy.code}) if more and page else ""
        return pb.ListPoliciesResponse(
            policies=[policy_to_proto(s) for s in page], next_page_token=token
        )

    async def RunDunning(
        self, request: pb.RunDunningRequest, context: Any
    ) -> pb.RunDunningResponse:
        violations = Violations()
        _request_id(request.request_id, violations)
        run_date = None
        if request.HasField("run_date"):
            run_date = date_from_proto(request.run_date, "run_date", violations)
        violations.raise_if_any()
        if request.wait:
            run = await asyncio.to_thread(
                runs.run_inline, self._uow_factory, run_date, run_hour=self._run_hour
            )
        else:
            run = await asyncio.to_thread(
                runs.start_run, self._uow_factory, run_date, run_hour=self._run_hour
            )
        if self._run_started is not None:
            self._run_started()
        return pb.RunDunningResponse(run=run_to_proto(run))

    async def GetDunningRun(
        self, request: pb.GetDunningRunRequest, context: Any
    ) -> pb.GetDunningRunResponse:
        violations = Violations()
        _id(request.run_id, "run_id", violations, required=True)
        violations.raise_if_any()

        def get() -> Run | None:
            with self._uow_factory() as uow:
                return uow.runs.get(request.run_id)

        run = await asyncio.to_thread(get)
        if run is None:
            raise NotFound(f"no dunning run {request.run_id}", reason="RUN_NOT_FOUND")
        return pb.GetDunningRunResponse(run=run_to_proto(run))

    async def ListDunningAccounts(
        self, request: pb.ListDunningAccountsRequest, context: Any
    ) -> pb.ListDunningAccountsResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        for name in ("policy_code", "group_id", "reseller_id"):
            _id(getattr(request, name), name, violations)
        violations.check(request.level >= 0, "level", "must not be negative")
        violations.check(
            request.min_days_past_due >= 0, "min_days_past_due", "must not be negative"
        )
        violations.check(
            request.state in _STATES.values() or request.state == 0, "state", "unknown state"
        )
        violations.raise_if_any()
        state = next((name for name, value in _STATES.items() if value == request.state), "")
        views, last = await asyncio.to_thread(
            handlers.list_cases,
            self._uow_factory(),
            level=request.level,
            state=state,
            policy_code=request.policy_code,
            min_days_past_due=request.min_days_past_due,
            group_id=request.group_id,
            reseller_id=request.reseller_id,
            after=(cursor or {}).get("after", ""),
            limit=size,
        )
        return pb.ListDunningAccountsResponse(
            accounts=[case_to_proto(v) for v in views],
            next_page_token=encode_page_token({"after": last}) if last else "",
        )

    async def SetExemption(
        self, request: pb.SetExemptionRequest, context: Any
    ) -> pb.SetExemptionResponse:
        violations = Violations()
        _request_id(request.request_id, violations)
        _id(request.account_id, "account_id", violations, required=True)
        end = (
            date_from_proto(request.end_date, "end_date", violations)
            if request.HasField("end_date")
            else None
        )
        violations.raise_if_any()
        account = await asyncio.to_thread(
            handlers.set_exemption,
            self._uow_factory(),
            request.account_id,
            request.reason,
            end,
            clear=request.clear,
        )
        return pb.SetExemptionResponse(
            account_id=account.account_id,
            end_date=date_to_proto(account.exempt_until),
            reason=account.exempt_reason,
        )

    async def GetPaymentBehaviour(
        self, request: pb.GetPaymentBehaviourRequest, context: Any
    ) -> pb.GetPaymentBehaviourResponse:
        violations = Violations()
        _id(request.customer_id, "customer_id", violations, required=True)
        violations.raise_if_any()
        record, outcomes = await asyncio.to_thread(
            handlers.behaviour, self._uow_factory(), request.customer_id
        )
        return pb.GetPaymentBehaviourResponse(
            behaviour=behaviour_to_proto(request.customer_id, record),
            outcomes=[outcome_to_proto(o) for o in outcomes],
        )

    async def ListPaymentBehaviours(
        self, request: pb.ListPaymentBehavioursRequest, context: Any
    ) -> pb.ListPaymentBehavioursResponse:
        violations = Violations()
        size = page_size_from_proto(request.page_size, violations)
        cursor = decode_page_token(request.page_token, violations)
        violations.raise_if_any()
        found, last = await asyncio.to_thread(
            handlers.behaviours,
            self._uow_factory(),
            grade=request.grade,
            after=(cursor or {}).get("after", ""),
            limit=size,
        )
        return pb.ListPaymentBehavioursResponse(
            behaviours=[behaviour_to_proto(c, b) for c, b in found],
            next_page_token=encode_page_token({"after": last}) if last else "",
        )
