import click
@click.group()
def sif():
    """placeholder"""
