"""The gRPC face of the accounts service: proto in, handler, proto out.

Each method translates its request into a command (every bad field reported
at once, nothing written), runs the synchronous handler in a worker thread
(ADR 0002: the thread inherits the call's trace context, so SQL spans are its
children) and translates the result back. Errors raised anywhere are
``ReckonError``s that the kit's interceptor maps to rich statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from reckon.accounts.v1 import accounts_pb2 as pb
from reckon.accounts.v1 import accounts_pb2_grpc
from services.accounts.entrypoints import translate
from services.accounts.service_layer import commands as cmd
from services.accounts.service_layer import handlers
from services.accounts.service_layer.plan_catalog import PlanCatalog
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.customer_scope import check_owner, customer_scope

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AccountsService"].full_name

C = TypeVar("C")
R = TypeVar("R")


class AccountsServicer(accounts_pb2_grpc.AccountsServiceServicer):
    def __init__(self, uow_factory: Callable[[], AccountsUnitOfWork], catalog: PlanCatalog) -> None:
        self._uow_factory = uow_factory
        # Handlers that check plan and add-on codes get the catalog bound here.
        self._create_subscription = partial(handlers.create_subscription, catalog=catalog)
        self._change_plan = partial(handlers.change_plan, catalog=catalog)
        self._add_add_on = partial(handlers.add_add_on, catalog=catalog)

    async def _run(self, handler: Callable[[C, AccountsUnitOfWork], R], command: C) -> R:
        # A fresh unit of work per call: a unit holds one session and is not shared.
        return await asyncio.to_thread(handler, command, self._uow_factory())

    # -- customers ----------------------------------------------------------------------------
    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: Any
    ) -> pb.CreateCustomerResponse:
        command = translate.create_customer_command(request)
        customer = await self._run(handlers.create_customer, command)
        return pb.CreateCustomerResponse(customer=translate.customer_to_proto(customer))

    async def GetCustomer(
        self, request: pb.GetCustomerRequest, context: Any
    ) -> pb.GetCustomerResponse:
        customer = await self._run(handlers.get_customer, translate.get_customer_query(request))
        check_owner(
            customer_scope(context),
            customer.customer_id,
            reason="CUSTOMER_NOT_FOUND",
            what="customer",
        )
        return pb.GetCustomerResponse(customer=translate.customer_to_proto(customer))

    async def ListCustomers(
        self, request: pb.ListCustomersRequest, context: Any
    ) -> pb.ListCustomersResponse:
        query, key = translate.list_customers_query(request)
        page = await self._run(handlers.list_customers, query)
        return pb.ListCustomersResponse(
            customers=[translate.customer_to_proto(c) for c in page.items],
            next_page_token=translate.next_page_token(page.next_after, key),
        )

    async def UpdateCustomer(
        self, request: pb.UpdateCustomerRequest, context: Any
    ) -> pb.UpdateCustomerResponse:
        command = translate.update_customer_command(request)
        customer = await self._run(handlers.update_customer, command)
        return pb.UpdateCustomerResponse(customer=translate.customer_to_proto(customer))

    # -- accounts -----------------------------------------------------------------------------
    async def CreateAccount(
        self, request: pb.CreateAccountRequest, context: Any
    ) -> pb.CreateAccountResponse:
        account = await self._run(
            handlers.create_account, translate.create_account_command(request)
        )
        return pb.CreateAccountResponse(account=translate.account_to_proto(account))

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Any
    ) -> pb.GetAccountResponse:
        account = await self._run(handlers.get_account, translate.get_account_query(request))
        check_owner(
            customer_scope(context), account.customer_id, reason="ACCOUNT_NOT_FOUND", what="account"
        )
        return pb.GetAccountResponse(account=translate.account_to_proto(account))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Any
    ) -> pb.ListAccountsResponse:
        scope = customer_scope(context)
        if scope is not None:
            check_owner(scope, request.customer_id, reason="CUSTOMER_NOT_FOUND", what="customer")
        query, key = translate.list_accounts_query(request)
        page = await self._run(handlers.list_accounts, query)
        return pb.ListAccountsResponse(
            accounts=[translate.account_to_proto(a) for a in page.items],
            next_page_token=translate.next_page_token(page.next_after, key),
        )

    async def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: Any
    ) -> pb.UpdateAccountResponse:
        account = await self._run(
            handlers.update_account, translate.update_account_command(request)
        )
        return pb.UpdateAccountResponse(account=translate.account_to_proto(account))

    async def SuspendAccount(
        self, request: pb.SuspendAccountRequest, context: Any
    ) -> pb.SuspendAccountResponse:
        command = translate.state_change_command(request, cmd.SuspendAccount)
        account = await self._run(handlers.suspend_account, command)
        return pb.SuspendAccountResponse(account=translate.account_to_proto(account))

    async def BarAccount(
        self, request: pb.BarAccountRequest, context: Any
    ) -> pb.BarAccountResponse:
        command = translate.state_change_command(request, cmd.BarAccount)
        account = await self._run(handlers.bar_account, command)
        return pb.BarAccountResponse(account=translate.account_to_proto(account))

    async def RestoreAccount(
        self, request: pb.RestoreAccountRequest, context: Any
    ) -> pb.RestoreAccountResponse:
        command = translate.state_change_command(request, cmd.RestoreAccount)
        account = await self._run(handlers.restore_account, command)
        return pb.RestoreAccountResponse(account=translate.account_to_proto(account))

    async def CloseAccount(
        self, request: pb.CloseAccountRequest, context: Any
    ) -> pb.CloseAccountResponse:
        command = translate.state_change_command(request, cmd.CloseAccount)
        account = await self._run(handlers.close_account, command)
        return pb.CloseAccountResponse(account=translate.account_to_proto(account))

    async def ListAccountStateHistory(
        self, request: pb.ListAccountStateHistoryRequest, context: Any
    ) -> pb.ListAccountStateHistoryResponse:
        query, key = translate.list_state_history_query(request)
        page = await self._run(handlers.list_account_state_history, query)
        return pb.ListAccountStateHistoryResponse(
            state_changes=[translate.state_change_to_proto(c) for c in page.items],
            next_page_token=translate.next_page_token(page.next_after, key),
        )

    # -- subscriptions ------------------------------------------------------------------------
    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Any
    ) -> pb.CreateSubscriptionResponse:
        command = translate.create_subscription_command(request)
        view = await self._run(self._create_subscription, command)
        return pb.CreateSubscriptionResponse(subscription=translate.subscription_to_proto(view))

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Any
    ) -> pb.GetSubscriptionResponse:
        query = translate.get_subscription_query(request)
        view = await self._run(handlers.get_subscription, query)
        return pb.GetSubscriptionResponse(subscription=translate.subscription_to_proto(view))

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Any
    ) -> pb.ListSubscriptionsResponse:
        query, key = translate.list_subscriptions_query(request)
        page = await self._run(handlers.list_subscriptions, query)
        return pb.ListSubscriptionsResponse(
            subscriptions=[translate.subscription_to_proto(v) for v in page.items],
            next_page_token=translate.next_page_token(page.next_after, key),
        )

    async def ChangePlan(
        self, request: pb.ChangePlanRequest, context: Any
    ) -> pb.ChangePlanResponse:
        command = translate.change_plan_command(request)
        view = await self._run(self._change_plan, command)
        return pb.ChangePlanResponse(subscription=translate.subscription_to_proto(view))

    async def AddAddOn(self, request: pb.AddAddOnRequest, context: Any) -> pb.AddAddOnResponse:
        command = translate.add_add_on_command(request)
        view = await self._run(self._add_add_on, command)
        return pb.AddAddOnResponse(subscription=translate.subscription_to_proto(view))

    async def RemoveAddOn(
        self, request: pb.RemoveAddOnRequest, context: Any
    ) -> pb.RemoveAddOnResponse:
        view = await self._run(handlers.remove_add_on, translate.remove_add_on_command(request))
        return pb.RemoveAddOnResponse(subscription=translate.subscription_to_proto(view))

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: Any
    ) -> pb.CancelSubscriptionResponse:
        command = translate.cancel_subscription_command(request)
        view = await self._run(handlers.cancel_subscription, command)
        return pb.CancelSubscriptionResponse(subscription=translate.subscription_to_proto(view))
