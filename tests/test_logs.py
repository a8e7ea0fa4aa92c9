"""The log reader that every server, scheduler and worker test relies on."""

from tests.logs import assert_no_traceback, tracebacks

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
