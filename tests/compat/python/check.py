"""Keel with the official Temporal Python SDK: a worker on one node, a client on another.

Usage: python check.py WORKER_ADDR CLIENT_ADDR. Exits non-zero on the first failed check.
"""

import asyncio
import os
import sys
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100))


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(f"check failed: {what}")
    print(f"ok: {what}", flush=True)


# ---------------------------------------------------------------- activities

@activity.defn
async def greet(name: str) -> str:
    return f"hello {name}"


_attempts: dict = {}


@activity.defn
async def flaky(key: str) -> str:
    """Fails its first two attempts."""
    n = _attempts.get(key, 0) + 1
    _attempts[key] = n
    if n < 3:
        raise RuntimeError(f"attempt {n}")
    return f"ok after {n}"


@activity.defn
async def fatal() -> str:
    raise ApplicationError("nope", type="Fatal", non_retryable=True)


@activity.defn
async def slow_beat() -> str:
    """First attempt: heartbeats once, then outlives its 1 s heartbeat timeout."""
    details = activity.info().heartbeat_details
    if not details:
        activity.heartbeat(1)
        await asyncio.sleep(3)
        return "the first attempt should have timed out"
    return f"resumed from {details[0]} on attempt {activity.info().attempt}"


@activity.defn
async def until_cancelled() -> str:
    """Heartbeats until cancelled (the cancellation arrives as a heartbeat response); the
    cancellation propagates, so the SDK reports the attempt as cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.1)


@activity.defn
async def long_local(ms: int) -> str:
    """Runs longer than its workflow's task timeout (the work simulated, not a wait)."""
    await asyncio.sleep(ms / 1000)
    return f"worked {ms} ms"


# ---------------------------------------------------------------- workflows

@workflow.defn
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        last = ""
        for i in range(3):
            last = await workflow.execute_activity(
                greet, f"{name}{i}", start_to_close_timeout=timedelta(seconds=10)
            )
        return last


@workflow.defn
class Local:
    """Local activities (recorded as markers) around a durable timer."""

    @workflow.run
    async def run(self, name: str) -> str:
        first = await workflow.execute_local_activity(
            greet, f"{name}-a", start_to_close_timeout=timedelta(seconds=10)
        )
        await asyncio.sleep(0.3)
        second = await workflow.execute_local_activity(
            greet, f"{name}-b", start_to_close_timeout=timedelta(seconds=10)
        )
        return f"{first}, {second}"


@workflow.defn
class Retrying:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            flaky, key, start_to_close_timeout=timedelta(seconds=10), retry_policy=FAST_RETRY
        )


@workflow.defn
class Failing:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(fatal, start_to_close_timeout=timedelta(seconds=10))
            return "unexpected success"
        except ActivityError as e:
            cause = e.cause
            assert isinstance(cause, ApplicationError)
            return f"caught {cause.type}: {cause.message} non_retryable={cause.non_retryable}"


@workflow.defn
class Heartbeating:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            slow_beat,
            start_to_close_timeout=timedelta(seconds=10),
            heartbeat_timeout=timedelta(seconds=1),
            retry_policy=FAST_RETRY,
        )


@workflow.defn
class Cancelling:
    @workflow.run
    async def run(self) -> str:
        handle = workflow.start_activity(
            until_cancelled,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=2),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await asyncio.sleep(0.5)
        handle.cancel()
        try:
            return await handle
        except ActivityError as e:
            return f"activity cancelled: {type(e.cause).__name__}"


@workflow.defn
class Waiter:
    """Waits for two `add` signals (20 s at most); `status` answers what it got."""

    def __init__(self) -> None:
        self.got: list = []

    @workflow.run
    async def run(self) -> list:
        try:
            await workflow.wait_condition(lambda: len(self.got) >= 2, timeout=timedelta(seconds=20))
            outcome = "done"
        except asyncio.TimeoutError:
            outcome = "timeout"
        await asyncio.sleep(0.2)
        return self.got + [outcome]

    @workflow.signal
    def add(self, v: str) -> None:
        self.got.append(v)

    @workflow.query
    def status(self) -> list:
        return list(self.got)


@workflow.defn
class ShortWait:
    def __init__(self) -> None:
        self.got = False

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: self.got, timeout=timedelta(milliseconds=300))
            return "signalled"
        except asyncio.TimeoutError:
            return "timed out"

    @workflow.signal
    def add(self, _v: str) -> None:
        self.got = True


@workflow.defn
class LongLocal:
    """A local activity outliving the 2 s task timeout: the SDK heartbeats the task."""

    def __init__(self) -> None:
        self.phase = "starting"

    @workflow.run
    async def run(self, ms: int) -> str:
        self.phase = "working"
        done = await workflow.execute_local_activity(
            long_local, ms, start_to_close_timeout=timedelta(seconds=30)
        )
        self.phase = "done"
        return done

    @workflow.query
    def current(self) -> str:
        return self.phase


@workflow.defn
class Chain:
    """Continues as new until run `n` reaches 5; the last run reports what it inherited."""

    @workflow.run
    async def run(self, n: int) -> str:
        info = workflow.info()
        if n < 5:
            workflow.continue_as_new(n + 1)
        return (f"run {n} continued={info.continued_run_id is not None} "
                f"memo={workflow.memo_value('k', default=None)} "
                f"history={info.get_current_history_length() > 0 and info.get_current_history_size() > 0}")


@workflow.defn
class Parent:
    """Runs Hello as a child on the same queue and reports what the child returned."""

    @workflow.run
    async def run(self, name: str) -> str:
        child = await workflow.execute_child_workflow(
            Hello.run, name, id=f"{workflow.info().workflow_id}-child"
        )
        return f"child said {child}"


@workflow.defn
class FailsTwice:
    """Fails its first two attempts; the workflow retry policy brings the third."""

    @workflow.run
    async def run(self) -> str:
        attempt = workflow.info().attempt
        if attempt < 3:
            raise ApplicationError(f"attempt {attempt} fails")
        return f"attempt {attempt}"


PY_AMOUNT = SearchAttributeKey.for_int("KeelPyAmount")
PY_CUSTOMER = SearchAttributeKey.for_keyword("KeelPyCustomer")


@workflow.defn
class Tagged:
    """Reads its start search attribute, upserts one, unsets it, and adds to its memo."""

    @workflow.run
    async def run(self) -> str:
        customer = workflow.info().typed_search_attributes.get(PY_CUSTOMER)
        workflow.upsert_search_attributes([PY_AMOUNT.value_set(7), PY_CUSTOMER.value_unset()])
        workflow.upsert_memo({"stage": "tagged"})
        now = workflow.info().typed_search_attributes.get(PY_AMOUNT)
        return f"customer={customer} amount={now}"


@workflow.defn
class RetryingParent:
    """Runs FailsTwice as a child with a retry policy: the child's third attempt succeeds."""

    @workflow.run
    async def run(self) -> str:
        r = await workflow.execute_child_workflow(
            FailsTwice.run, id=f"{workflow.info().workflow_id}-child", retry_policy=FAST_RETRY)
        return f"child {r}"


@workflow.defn
class Forever:
    @workflow.run
    async def run(self) -> None:
        await asyncio.sleep(30 * 24 * 3600)


@workflow.defn
class Counter:
    """Adds by updates (a validator refuses negative amounts) until `finish`."""

    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.total

    @workflow.update
    async def add(self, n: int) -> int:
        await asyncio.sleep(0.05)  # a timer inside the handler
        self.total += n
        return self.total

    @add.validator
    def check_add(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"negative amount {n}")

    @workflow.update
    def finish(self) -> str:
        self.done = True
        return "finishing"


# ---------------------------------------------------------------- the check

async def failure_of(awaitable) -> BaseException:
    try:
        await awaitable
    except BaseException as e:  # noqa: BLE001 - the failure is what is checked
        return e
    raise AssertionError("expected a failure")


async def main(worker_addr: str, client_addr: str) -> None:
    queue = f"py-{time.time_ns():x}"
    worker_client = await Client.connect(worker_addr)
    client = await Client.connect(client_addr)

    def wid(name: str) -> dict:
        return {"id": f"{name}-{queue}", "task_queue": queue}

    async with Worker(
        worker_client,
        task_queue=queue,
        workflows=[Hello, Local, Retrying, Failing, Heartbeating, Cancelling, Waiter, ShortWait,
                   LongLocal, Forever, Chain, Parent, FailsTwice, Tagged,
                   RetryingParent, Counter],
        activities=[greet, flaky, fatal, slow_beat, until_cancelled, long_local],
    ):
        check(await client.service_client.check_health(), "the health check (gzip) says serving")

        # Activities: results, retries, failures, heartbeats, cancellation.
        check(await client.execute_workflow(Hello.run, "py", **wid("hello")) == "hello py2",
              "three sequential activities")
        check(await client.execute_workflow(Local.run, "py", **wid("local"))
              == "hello py-a, hello py-b", "local activities around a durable timer")
        check(await client.execute_workflow(Retrying.run, "k", **wid("retry")) == "ok after 3",
              "a failing activity is retried with backoff until it succeeds")
        r = await client.execute_workflow(Failing.run, **wid("fatal"))
        check(r == "caught Fatal: nope non_retryable=True",
              f"a non-retryable failure reaches the workflow with its type ({r})")
        r = await client.execute_workflow(Heartbeating.run, **wid("heartbeat"))
        check(r == "resumed from 1 on attempt 2",
              f"a heartbeat timeout retries the activity with its last details ({r})")
        r = await client.execute_workflow(Cancelling.run, **wid("cancel-activity"))
        check(r == "activity cancelled: CancelledError", f"an activity is cancelled ({r})")

        # A local activity longer than the task timeout, queried while it runs: the query goes
        # out with the next heartbeat task, so within two heartbeats (3.2 s) of the first.
        long = await client.start_workflow(LongLocal.run, 8000, **wid("long-local"),
                                           task_timeout=timedelta(seconds=2))
        deadline = time.monotonic() + 20
        while True:  # until a workflow-task heartbeat went through (a condition, bounded)
            events = (await long.fetch_history()).events
            beats = sum(1 for e in events
                        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
            if beats >= 1:
                break
            if time.monotonic() > deadline:
                raise AssertionError("check failed: no workflow-task heartbeat within 20 s")
            await asyncio.sleep(0.1)
        t0 = time.monotonic()
        phase = await long.query(LongLocal.current)
        check(phase == "working",
              f"a query answered during a heartbeating local activity ({phase!r}, "
              f"{time.monotonic() - t0:.1f} s)")
        check(await long.result() == "worked 8000 ms",
              "a local activity longer than the task timeout completes")
        events = (await long.fetch_history()).events
        check(not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for e in events),
              "no workflow task timed out")

        # Signals, queries, conditions, describe.
        waiter = await client.start_workflow(Waiter.run, **wid("waiter"))
        e = await failure_of(client.start_workflow(Waiter.run, **wid("waiter")))
        check(isinstance(e, WorkflowAlreadyStartedError),
              "a second start of a running id is WorkflowAlreadyStartedError")
        await waiter.signal(Waiter.add, "a")
        check(await waiter.query(Waiter.status) == ["a"], "a query while running")
        await waiter.signal(Waiter.add, "b")
        check(await waiter.result() == ["a", "b", "done"], "signals satisfy a condition")
        check(await waiter.query(Waiter.status) == ["a", "b"], "a query after completion")
        e = await failure_of(waiter.query("no-such-query"))
        check(isinstance(e, WorkflowQueryFailedError), "an unknown query is WorkflowQueryFailedError")
        desc = await waiter.describe()
        check(desc.status is not None and desc.status.name == "COMPLETED" and desc.workflow_type == "Waiter",
              "describe shows the completed run and its type")
        check(await client.execute_workflow(ShortWait.run, **wid("short")) == "timed out",
              "a condition with a timeout times out")
        sws = await client.start_workflow(Waiter.run, **wid("signal-with-start"),
                                          start_signal="add", start_signal_args=["x"])
        await sws.signal(Waiter.add, "y")
        check(await sws.result() == ["x", "y", "done"], "signal-with-start")

        # Cancellation, termination, errors.
        cancelled = await client.start_workflow(Forever.run, **wid("cancel"))
        await cancelled.cancel()
        e = await failure_of(cancelled.result())
        check(isinstance(e, WorkflowFailureError) and isinstance(e.cause, CancelledError),
              "workflow cancellation")
        terminated = await client.start_workflow(Forever.run, **wid("terminate"))
        await terminated.terminate("bye")
        e = await failure_of(terminated.result())
        check(isinstance(e, WorkflowFailureError) and isinstance(e.cause, TerminatedError),
              "termination")
        e = await failure_of(client.get_workflow_handle(f"nope-{queue}").describe())
        check(isinstance(e, RPCError) and e.status == RPCStatusCode.NOT_FOUND,
              "an unknown workflow is NOT_FOUND")

        # Continue-as-new: the client follows the chain; memo and history info carry over.
        r = await client.execute_workflow(Chain.run, 1, **wid("chain"), memo={"k": "v"})
        check(r == "run 5 continued=True memo=v history=True",
              f"continue-as-new chain of 5 runs, memo carried ({r})")
        r = await client.execute_workflow(Parent.run, "py", **wid("parent"))
        check(r == "child said hello py2", f"a child workflow's result reaches its parent ({r})")
        r = await client.execute_workflow(
            FailsTwice.run, **wid("wf-retry"),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100),
                                     backoff_coefficient=1.0, maximum_attempts=5))
        check(r == "attempt 3", f"a workflow retried by its retry policy ({r})")
        r = await client.execute_workflow(RetryingParent.run, **wid("retrying-parent"))
        check(r == "child attempt 3", f"a child retried by its retry policy ({r})")
        delayed = await client.start_workflow(Chain.run, 5, **wid("delayed"),
                                              start_delay=timedelta(seconds=1))
        check((await delayed.result()).startswith("run 5"), "a delayed start runs")
        d = await delayed.describe()
        lag = (d.raw_description.workflow_execution_info.execution_time.ToDatetime()
               - d.raw_description.workflow_execution_info.start_time.ToDatetime())
        check(abs(lag.total_seconds() - 1.0) < 0.05, f"execution time is start + delay ({lag})")
        e = await failure_of(client.start_workflow(Chain.run, 5, **wid("bad-cron"),
                                                   cron_schedule="every other tuesday"))
        check(isinstance(e, RPCError) and e.status == RPCStatusCode.INVALID_ARGUMENT
              and "CronSchedule" in e.message, f"an invalid cron schedule is refused ({e})")

        # Visibility and history: 12 runs, the chain's 5, the delayed one, the parent and its
        # child, the retried workflow's 3 attempts, and the retrying parent with its child's 3.
        listed = [w async for w in client.list_workflows(f"TaskQueue = '{queue}'")]
        check(len(listed) == 27, f"list finds the 27 runs ({len(listed)})")
        check((await client.count_workflows(f"TaskQueue = '{queue}'")).count == 27,
              "count finds the 27 runs")
        # Cron: a run every second until terminated (after the counts above).
        await client.start_workflow(Chain.run, 5, **wid("cron"), cron_schedule="@every 1s")
        deadline = time.monotonic() + 30
        done = 0
        while time.monotonic() < deadline:
            done = (await client.count_workflows(
                f"WorkflowId = 'cron-{queue}' AND ExecutionStatus = 'Completed'")).count
            if done >= 2:
                break
            await asyncio.sleep(0.2)
        check(done >= 2, f"a cron workflow ran on schedule ({done} runs completed)")
        await client.get_workflow_handle(f"cron-{queue}").terminate("enough")
        history = await client.get_workflow_handle(f"hello-{queue}").fetch_history()
        check(len(history.events) > 10, f"history fetch ({len(history.events)} events)")

        # Search attributes and memo: registered through OperatorService (again: a no-op),
        # set at start, upserted and unset by the workflow, then listed, counted, described.
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace="default",
            search_attributes={
                "KeelPyAmount": IndexedValueType.INDEXED_VALUE_TYPE_INT,
                "KeelPyCustomer": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            }))
        r = await client.execute_workflow(
            Tagged.run, **wid("tagged"), memo={"origin": "py"},
            search_attributes=TypedSearchAttributes([SearchAttributePair(PY_CUSTOMER, "acme")]))
        check(r == "customer=acme amount=7", f"a workflow reads and upserts attributes ({r})")
        d = await client.get_workflow_handle(f"tagged-{queue}").describe()
        check(d.typed_search_attributes.get(PY_AMOUNT) == 7
              and d.typed_search_attributes.get(PY_CUSTOMER) is None,
              f"describe shows the upserted attributes ({d.typed_search_attributes})")
        memo = await d.memo()
        check(memo == {"origin": "py", "stage": "tagged"}, f"the memo was modified ({memo})")
        ids = [w.id async for w in client.list_workflows(
            f"KeelPyAmount BETWEEN 5 AND 10 AND KeelPyCustomer IS NULL AND TaskQueue = '{queue}'")]
        check(ids == [f"tagged-{queue}"], f"list filters on custom attributes ({ids})")
        grouped = await client.count_workflows(f"TaskQueue = '{queue}' GROUP BY ExecutionStatus")
        statuses = {g.group_values[0]: g.count for g in grouped.groups}
        check(sum(statuses.values()) == grouped.count and statuses.get("Completed", 0) > 10,
              f"count groups by status ({statuses})")
        e = await failure_of(client.start_workflow(
            Tagged.run, **wid("undeclared"),
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SearchAttributeKey.for_int("KeelPyNope"), 1)])))
        check(isinstance(e, RPCError) and e.status == RPCStatusCode.INVALID_ARGUMENT
              and "KeelPyNope" in str(e), f"an undeclared attribute is refused by name ({e})")

        # Updates (after the list/count checks above, which count this queue's runs).
        counter = await client.start_workflow(Counter.run, **wid("counter"))
        check(await counter.execute_update(Counter.add, 5) == 5,
              "an update is accepted and completes with its handler's result")
        check(await counter.execute_update(Counter.add, 3, id="add-3") == 8, "a second update")
        check(await counter.execute_update(Counter.add, 3, id="add-3") == 8,
              "an update retried with its id gets the first outcome")
        e = await failure_of(counter.execute_update(Counter.add, -1))
        check(isinstance(e, WorkflowUpdateFailedError) and "negative amount" in str(e.cause),
              f"a validator rejects an update ({e!r})")
        accepted_update = await counter.start_update(
            Counter.add, 2, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        check(await accepted_update.result() == 10, "an update waited on to ACCEPTED, then polled")
        check(await counter.execute_update(Counter.finish) == "finishing", "a synchronous handler")
        check(await counter.result() == 10, "the workflow saw every update")
        kinds = [ev.event_type async for ev in counter.fetch_history_events()]
        check(kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == 4
              and kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) == 4,
              "four updates accepted and completed; the rejected one wrote no event")
        e = await failure_of(counter.execute_update(Counter.add, 1))
        check(isinstance(e, RPCError) and e.status == RPCStatusCode.NOT_FOUND,
              f"an update of a closed workflow is NOT_FOUND ({e!r})")

        def cart_op() -> WithStartWorkflowOperation:
            return WithStartWorkflowOperation(
                Counter.run, id=f"cart-{queue}", task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        check(await client.execute_update_with_start_workflow(
            Counter.add, 4, start_workflow_operation=cart_op()) == 4,
              "update-with-start starts the workflow and runs the update")
        second = cart_op()
        check(await client.execute_update_with_start_workflow(
            Counter.add, 6, start_workflow_operation=second) == 10,
              "update-with-start on the running workflow (USE_EXISTING)")
        cart = await second.workflow_handle()
        await cart.execute_update(Counter.finish)
        check(await cart.result() == 10, "one run took both updates")

        await check_schedules(client, queue)


async def check_schedules(client: Client, queue: str) -> None:
    """Schedules: an interval schedule acting every second, a cron spec as Temporal
    normalizes it, pause / trigger / unpause, backfill, list and delete."""
    from datetime import datetime, timezone

    every = await client.create_schedule(
        f"every-{queue}",
        Schedule(
            action=ScheduleActionStartWorkflow(Hello.run, "sched", id=f"sched-{queue}",
                                               task_queue=queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=1))]),
        ),
    )
    deadline = time.monotonic() + 30
    while (desc := await every.describe()).info.num_actions < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    check(desc.info.num_actions >= 2, "an interval schedule acts twice within 30 s")
    first = desc.info.recent_actions[0]
    check(first.action.workflow_id.startswith(f"sched-{queue}-"),
          f"a scheduled workflow id carries its time ({first.action.workflow_id})")
    result = await client.get_workflow_handle(first.action.workflow_id).result()
    check(result == "hello sched2", f"the scheduled workflow ran ({result})")
    await every.pause(note="hold on")
    desc = await every.describe()
    check(desc.schedule.state.paused and desc.schedule.state.note == "hold on",
          "paused with a note")
    await every.unpause(note="go")
    check(not (await every.describe()).schedule.state.paused, "unpaused")

    cron = await client.create_schedule(
        f"cron-{queue}",
        Schedule(
            action=ScheduleActionStartWorkflow(Hello.run, "cron", id=f"cron-{queue}",
                                               task_queue=queue),
            spec=ScheduleSpec(cron_expressions=["0 12 * * MON"]),
            state=ScheduleState(paused=True),
        ),
    )
    desc = await cron.describe()
    check(not desc.schedule.spec.cron_expressions and len(desc.schedule.spec.calendars) == 1,
          "a cron string comes back as a structured calendar")
    times = desc.info.next_action_times
    check(len(times) == 10 and all(t.weekday() == 0 and t.hour == 12 for t in times),
          f"the next ten times are Mondays at noon ({times[:2]}...)")
    # A trigger acts on a paused schedule (this one: an action at the same second as a running
    # one of the same schedule would share its workflow id, and lose, as in Temporal).
    await cron.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    check((await cron.describe()).info.num_actions == 1, "a trigger acts while paused")
    start = datetime(2020, 1, 20, 5, 0, tzinfo=timezone.utc)
    await cron.update(lambda u: None)  # a no-op update leaves it alone
    await cron.backfill(ScheduleBackfill(start_at=start, end_at=start + timedelta(days=14),
                                         overlap=ScheduleOverlapPolicy.ALLOW_ALL))
    desc = await cron.describe()
    check(desc.info.num_actions == 3,
          f"a two-week backfill acts on its two Mondays ({desc.info.num_actions})")

    ids = [s.id async for s in await client.list_schedules()]
    check(every.id in ids and cron.id in ids, "both schedules are listed")
    for h in (every, cron):
        await h.delete()
    e = await failure_of(every.describe())
    check(isinstance(e, RPCError) and e.status == RPCStatusCode.NOT_FOUND,
          f"a deleted schedule is NOT_FOUND ({e!r})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: check.py WORKER_ADDR CLIENT_ADDR")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    # Every check passed. Leave without interpreter finalization: the SDK's Rust threads may
    # still call into Python then (seen once: "PyGILState_Release: thread state ... must be
    # current", SIGABRT after the last check passed), which says nothing about the server.
    sys.stdout.flush()
    os._exit(0)
