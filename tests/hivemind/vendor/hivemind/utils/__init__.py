# natpeer shim: hivemind's real hivemind/utils/__init__ re-exports modules that need torch;
# the P2P client imports the submodules it uses directly.
