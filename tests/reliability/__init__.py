"""Issue 20: what the gateway survives (full or read-only disks, crashes, taken ports, bad settings), each fault
made for real and seen by a real client or in the real command's output."""
