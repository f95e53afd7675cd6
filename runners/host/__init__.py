"""This host's facts and services: /proc/meminfo, PSI, memory cgroups, process identity, the container engine."""
