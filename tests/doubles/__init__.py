"""Test doubles for services that cannot run on a development machine."""
