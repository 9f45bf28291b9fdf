"""Test helpers for ckptlab and for people writing stores for it (public, optional).

* :class:`LocalS3Server`: a moto S3 server on 127.0.0.1 that counts requests (needs ``moto``).
* :class:`StoreConformance`: the contract every :class:`~ckptlab.storage.ByteStore` passes, as a
  pytest test class to subclass (needs ``pytest``).

Nothing here is imported by ckptlab itself.
"""

from ckptlab.testing._s3 import LocalS3Server

__all__ = ["LocalS3Server"]
