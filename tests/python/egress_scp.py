"""A storage SCP that answers C-STOREs with the statuses it is told to.

Used by the gateway's egress tests to produce failure and warning statuses
that dcmtk's storescp cannot: `egress_scp.py PORT A700,0000` answers the
first C-STORE with 0xA700 and every later one with 0x0000 (the last status
repeats). Instances answered with a Success or Warning status are written to
OUTPUT_DIR (optional third argument) as <SOP Instance UID>.dcm.
"""

import os
import sys

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt


def main() -> None:
    port = int(sys.argv[1])
    statuses = [int(s, 16) for s in sys.argv[2].split(",")]
    output_dir = sys.argv[3] if len(sys.argv) > 3 else None
    calls = [0]

    def handle_store(event):
        status = statuses[min(calls[0], len(statuses) - 1)]
        calls[0] += 1
        if output_dir and (status == 0 or status & 0xF000 == 0xB000):
            ds = event.dataset
            ds.file_meta = event.file_meta
            ds.save_as(os.path.join(output_dir, f"{ds.SOPInstanceUID}.dcm"), enforce_file_format=True)
        return status

    ae = AE(ae_title="PACS")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.start_server(
        ("127.0.0.1", port),
        block=True,
        evt_handlers=[(evt.EVT_C_STORE, handle_store)],
    )


if __name__ == "__main__":
    main()
