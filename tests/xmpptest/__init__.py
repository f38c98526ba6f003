"""Integration-test harness for XEP-0114 components: real servers, clients, component processes."""
