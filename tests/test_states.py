from db.states import TERMINAL_STATES, TRANSITIONS, JobStatus, sources_of


def test_only_queued_jobs_start() -> None:
    assert sources_of(JobStatus.RUNNING) == [JobStatus.QUEUED]


def test_final_states_are_final() -> None:
    for status in TERMINAL_STATES:
        assert status.is_terminal
        assert TRANSITIONS[status] == frozenset()
    assert not JobStatus.RUNNING.is_terminal


def test_results_land_on_running_or_requeued_jobs_only() -> None:
    assert sources_of(JobStatus.SUCCEEDED) == [JobStatus.QUEUED, JobStatus.RUNNING]
