"""vcmbench: benchmarking harness for MPEG Video Coding for Machines feature compression.

Data flows one way: dataset -> front -> codec -> back -> metrics -> table -> report.
"""

__version__ = "0.1.0"
