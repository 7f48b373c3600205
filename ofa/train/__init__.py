"""Progressive-shrinking training of a once-for-all supernet (`ofa train`).

    from ofa.train import TrainConfig, make_schedule, train
    outcome = train(TrainConfig(SearchSpace.preset("tiny"), "digits", make_schedule("smoke"), Path("work")))
"""
from ofa.train.schedule import SAMPLERS, SCHEDULES, Phase, Schedule, ScheduleError, make_schedule
from ofa.train.state import TrainStateError
from ofa.train.trainer import TrainConfig, TrainError, TrainOutcome, train

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "Phase",
    "Schedule",
    "ScheduleError",
    "TrainConfig",
    "TrainError",
    "TrainOutcome",
    "TrainStateError",
    "make_schedule",
    "train",
]
