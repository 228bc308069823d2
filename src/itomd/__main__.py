from itomd.cli import run_command

run_command()
