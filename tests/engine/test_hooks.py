"""shared_kd.engine.hooks: the writer's period that the losses follow."""

from detectron2.engine import hooks

from shared_kd.engine.hooks import writer_period


def test_writer_period_is_the_periodic_writers():
    ret = [hooks.IterationTimer(), hooks.PeriodicWriter([], period=7)]
    assert writer_period(ret) == 7


def test_no_writer_no_period():
    # processes other than the main one get no PeriodicWriter from DefaultTrainer.build_hooks
    assert writer_period([hooks.IterationTimer()]) is None
