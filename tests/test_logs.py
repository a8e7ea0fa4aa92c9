"""The log reader that every server, scheduler and worker test relies on."""

from tests.logs import assert_no_traceback, tracebacks, without_upstream_races

SCHEDULER_FAILURE = """12:00:01 | INFO | prefect.server - Starting
12:01:01 | ERROR | prefect.server.services.scheduler - Unexpected error in: InvalidRequestError(...)
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/server/services/scheduler.py", line 120, in run_once
    await self._insert_scheduled_flow_runs(session=session, runs=runs)
sqlalchemy.exc.InvalidRequestError: Can't evaluate bulk DML statement; please supply a bulk_dml decorated function
12:02:01 | INFO | uvicorn - GET /api/health 200
"""


def test_a_scheduler_traceback_is_found_with_its_exception():
    found = tracebacks(SCHEDULER_FAILURE)
    assert len(found) == 1 and found[0].endswith("please supply a bulk_dml decorated function")


def test_an_allowed_traceback_is_passed_and_a_clean_log_passes():
    assert tracebacks(SCHEDULER_FAILURE, allowed=["InvalidRequestError"]) == []
    assert_no_traceback("12:00:01 | INFO | started\n12:00:02 | WARNING | slow\n", "a server")


def test_assert_names_the_process():
    try:
        assert_no_traceback(SCHEDULER_FAILURE, "the Prefect server")
    except AssertionError as exc:
        assert "the Prefect server logged 1 traceback(s)" in str(exc) and "bulk_dml" in str(exc)
    else:
        raise AssertionError("a traceback passed")


HEARTBEAT_RACE = """16:47:10.001 | INFO | uvicorn - POST /api/work_pools/nst-local/get_scheduled_flow_runs 200
16:47:12.237 | ERROR   | prefect.server.utilities.worker_channel - Worker channel heartbeat persistence failed
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/aiosqlite/core.py", line 63, in _connection_worker_thread
sqlite3.OperationalError: database is locked

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/server/utilities/worker_channel.py", line 686, in _receive_loop
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked
(Background on this error at: https://sqlalche.me/e/21/e3q8)
16:47:14.500 | INFO | uvicorn - GET /api/health 200
"""


def test_only_the_known_upstream_heartbeat_race_is_let_through():
    """Prefect's SQLite write race on the worker heartbeat (PrefectHQ/prefect#18934) passes, and
    only it: the records around it stay, the same message with another cause fails, another
    record with the same cause fails, and a real failure beside the race is still found."""
    assert tracebacks(HEARTBEAT_RACE) == []
    kept = without_upstream_races(HEARTBEAT_RACE)
    assert "get_scheduled_flow_runs 200" in kept and "GET /api/health 200" in kept and "heartbeat" not in kept
    other_cause = HEARTBEAT_RACE.replace("database is locked", "no such table: worker")
    assert len(tracebacks(other_cause)) == 2
    other_record = HEARTBEAT_RACE.replace("Worker channel heartbeat persistence failed", "Failed to read flow runs")
    assert len(tracebacks(other_record)) == 2
    assert len(tracebacks(HEARTBEAT_RACE + SCHEDULER_FAILURE)) == 1
