# natpeer shim: hivemind's real __init__ imports the whole framework (torch, DHT, MoE);
# the vendored P2P client only needs the package to exist.
