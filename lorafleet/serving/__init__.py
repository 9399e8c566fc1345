"""Data plane: engine supervision (vLLM), the gateway, router, validators, metrics, drift.

Never imports ``lorafleet.training``.
"""
