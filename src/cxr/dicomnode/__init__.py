"""cxr as a DICOM node: receive instances by C-STORE, score them into the worklist database and
send a Secondary Capture and a Structured Report back to the PACS."""
