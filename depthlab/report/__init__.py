"""What depthlab writes and shows a person: `outputs` (output folders and their owner, safe file
names, atomic writes, disk errors), `tables` (text, HTML, CSV, pandas frames), `figures`
(matplotlib axes, saved atomically) and `wording` (percentages, epochs, the classic epoch line)."""
