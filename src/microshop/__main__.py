from microshop.cli import app

app(prog_name="microshop")
