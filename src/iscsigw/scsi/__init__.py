"""Transport-independent SCSI block device (SPC-4/SBC-3). Knows nothing of iSCSI PDUs."""
