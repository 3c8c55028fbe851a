"""Butte frameworks built on the scheduler SDK: Marathon, Chronos, Aurora."""
