"""What the jobs feature holds for the life of an API process, beside the shared Resources:
the submitter, the context check, the coalesced row reads, the token-log hub and the
queued jobs' wait estimates. The OpenAI
routes build on jobs, so they use these too."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.core.hub import EventHub
from api.jobs.context_check import ContextCheck
from api.jobs.rows import JobRows
from api.jobs.submitter import Submitter
from api.jobs.waiting import WaitEstimator


@dataclass
class JobServices:
    submitter: Submitter
    context: ContextCheck
    rows: JobRows
    hub: EventHub
    waits: WaitEstimator


async def get_job_services(request: Request) -> JobServices:
    services: JobServices = request.app.state.jobs
    return services


JobServicesDep = Annotated[JobServices, Depends(get_job_services)]
