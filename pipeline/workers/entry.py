"""Module the dramatiq CLI imports in each worker process (`dmp worker`): settings read once here."""

from pipeline.notify.sweeper import SweeperMiddleware
from pipeline.settings import Settings
from pipeline.workers.wiring import wire

wiring = wire(Settings())
broker = wiring.broker
# Each worker process also sends the notifications that are due (coalesced deposits, retries, leftovers).
broker.add_middleware(SweeperMiddleware(wiring.runtime))
