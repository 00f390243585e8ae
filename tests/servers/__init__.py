"""Real local storage servers (S3, SFTP, SMB, HTTP, Azure Blob, GCS) as pytest session fixtures."""
