"""Shared presets that experiment files import (``from configs import models``)."""
