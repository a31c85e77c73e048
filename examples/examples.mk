# Per-example link flags: EX_LIBS_<name> := ... (see the main Makefile's
# example rule). Every example links libwsmux.a, cJSON, wslay and pthread
# already; none needs more yet. The epoll, poll and chat examples use only
# libc.
