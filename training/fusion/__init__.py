"""Offline fusion search (seed 004): replay logged requests through a published model and choose
fusion weights against a stated target."""
