"""What people see: progress lines and bars, the live view of running pairs, the gallery."""
