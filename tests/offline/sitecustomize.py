"""On a subprocess's PYTHONPATH (`tests.command_line.command_env(offline=
True)`): every host-name lookup fails, as on a machine without internet."""

import socket


def _offline(*args, **kwargs):
  raise socket.gaierror(socket.EAI_NONAME, 'offline (lm_jax tests)')


socket.getaddrinfo = _offline
