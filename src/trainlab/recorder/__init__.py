"""The recorder process: owns the MLflow client and writes what trainers hand over.

Its own process (`python -m trainlab.recorder`, started by tracking/recorders.py), and the only
package that imports MLflow on the training path; what it is told is tracking/messages.py. The
trainer side never imports it; commands/ and team/ may (they open MLflow stores of their own). This
file imports nothing: the process listens before it imports MLflow.
"""
