"""Module the dramatiq CLI imports in each worker process (`dmp worker`): settings read once here."""

from pipeline.settings import Settings
from pipeline.workers.wiring import wire

wiring = wire(Settings())
broker = wiring.broker
