"""The synthetic city: raw files that look like real exports, with a known truth.

``generate(scale, out, seed=...)`` writes into ``out``:

* ``zones_iris.geojson``: polygons of a distorted grid around a centre (lat 48.85, lon 2.35),
  French column names (``code_iris``, ``nom``, ``population``, ``type_zone``);
* ``presence/``: Flux-Vision-like exports (``id_zone``, ``date_heure`` in naive local time,
  ``duree_min``, ``volume_present``, ``residents``, ``visiteurs``), most zones in hourly files
  written by 4-week chunk, a subset of residential zones in ONE file of 2-hour slots, and the daily
  origins file ``flux_vision_origines``;
* ``incidents/main_courante_*``: one row per incident (``numero``, ``date_heure`` as
  ``dd/mm/YYYY HH:MM:SS+hhmm``, Lambert-93 ``x_l93``/``y_l93``, ``nature``, ``service``,
  ``priorite``) plus a few deliberately bad rows;
* ``eclairage/lampadaires.csv`` (lat/lon) and ``eclairage/pannes.csv`` (faults, ISO times with
  offset, empty repair = still out);
* ``transport/gtfs.zip`` (stops, agency, routes) and ``transport/validations_*`` (entries per
  stop and hour, naive local time);
* ``meteo_horaire.csv`` (UTC), ``evenements.csv`` (past and upcoming events);
* one planted gap in the presence export (six hours of one zone absent; ``presence_gaps``);
* ``sources.yaml`` mapping all of it onto vigie's canonical names, and ``truth.json``.

The statistical model (the one ``docs/architecture.md`` "Model features" says the models
estimate): for zone z, UTC hour t and category c, incidents are Poisson with mean

    present[z, t] * base_rate[c] * hod[c][local hour] * dow[local weekday]
    * exp(sum_f beta[f, c] * x_f[z, t]) * signal multipliers

with ``hod[c][12] == 1`` and ``dow[Monday] == 1`` (the models' reference levels), ``present`` the
value the presence files deliver for that zone and hour (for 2-hour zones, the slot average, which
the cube applies to both hours), and the features exactly as the cube and
``pipelines.models.design`` define them: ``dark`` from :func:`features.calendar.dark_mask` at the
zone centroid of :func:`features.zones.centroids`; ``dark_lamps_out = dark * 10 * lamps_out /
lamps`` with a lamp out when a fault is open at the slot midpoint; ``event_k`` = expected
attendance / 1000 of events whose ``[start, end)`` overlaps the slot in the zone; ``rain`` =
precipitation_mm >= 1; ``transit_k`` = entries of the zone's stops / 1000; ``holiday`` and
``school_holiday`` from :mod:`features.calendar` (France, school zone C) on the local date.

The package, one subject per module (``generate`` is the orchestrator):

* :mod:`~features.synth.scales`: sizes, categories, effects, random streams;
* :mod:`~features.synth.timeline`: study period, calendar, darkness, time strings;
* :mod:`~features.synth.zones`, :mod:`~features.synth.presence`, :mod:`~features.synth.events`,
  :mod:`~features.synth.lighting`, :mod:`~features.synth.weather_stops`,
  :mod:`~features.synth.signals`, :mod:`~features.synth.incidents`: one source each;
* :mod:`~features.synth.context`: the frozen objects the steps hand to each other;
* :mod:`~features.synth.chunks`: the hourly simulation, 4 weeks at a time;
* :mod:`~features.synth.writers`, :mod:`~features.synth.truth`: files, ``sources.yaml``,
  ``truth.json``.

References
----------
Chalfin, A., Hansen, B., Weisburst, E. K., & Williams, M. C. (2022). Reducing crime through
environmental design: evidence from a randomized experiment of street lighting in New York City.
*Journal of Quantitative Criminology*, 38, 127-157 (the size of the lighting effect).
Orange Business, *Flux Vision* product documentation (present volumes, residents/visitors, origins).
"""

from features.synth.generate import SynthResult, generate
from features.synth.scales import CATEGORIES, EFFECTS, FEATURES, SCALES, ScaleSpec

__all__ = ["CATEGORIES", "EFFECTS", "FEATURES", "SCALES", "ScaleSpec", "SynthResult", "generate"]
