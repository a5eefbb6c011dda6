"""Datasets in upstream's ImageNet layout: check them fast, link them safely, make tiny ones.

Public entry points: ``check.check_dataset``, ``link.link_dataset`` / ``link.linked_root``,
``tiny.make_tiny`` / ``tiny.is_tiny_dataset`` and ``fingerprint.fingerprint``.
"""
