"""Stand-ins for tests, benchmarks and `esb demo` (as structlog.testing): the engine never imports them.

    http.py    StubHttpServer: a scriptable HTTP(S) endpoint on loopback that records every request
    ledger.py  StandInLedger: a general ledger on StubHttpServer that dedups by Idempotency-Key
    soap.py    VoucherArchiveServer (the OA archive's WSDL) and BlzServer (BLZService), spyne on loopback
    sftp.py    SftpServer: OpenSSH's sshd with internal-sftp on loopback, chrooted to a fresh folder
"""
