"""Control-socket commands, one module each: the request, what the supervisor does with
it (`execute`) and how the CLI shows the reply (`render`) live together."""

from supervisor.commands import hangup, metrics, status

COMMANDS = {module.NAME: module for module in (status, hangup, metrics)}
