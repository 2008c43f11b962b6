"""Learning and judging without the champion's bias: pure functions, no I/O.

- explore.py: the controlled randomisation the service applies to a share of rankings, and its probability;
- propensity.py: the examination probability of each position, estimated from the logs (the clicks' likelihood);
- estimators.py: inverse-propensity estimates of what a ranker would score, and paired comparisons with intervals.
"""
