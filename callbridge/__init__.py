"""callbridge: Asterisk inbound calls answered by an OpenAI Realtime voice agent."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("callbridge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
