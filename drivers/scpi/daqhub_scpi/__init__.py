"""daqhub-scpi: SCPI instruments over VISA, in both flavors.

Types (each in ``v2`` and ``v4``, transport ``visa``):

* ``scpi.dmm``: a multimeter; ``function = "VOLT:DC"`` (default, channel
  ``voltage`` in V), ``"CURR:DC"`` (``current``, A), ``"RES"`` (``resistance``,
  Ohm), or a list of them for several channels. Capability ``Readable``.
* ``scpi.psu``: a DC supply; channels ``voltage`` and ``current`` (measured),
  capability ``PowerSupply``.
* ``scpi.custom``: any SCPI instrument, described in the lab file::

      [[v4.instruments]]
      id = "cryo"
      type = "scpi.custom"
      resource = "TCPIP::10.0.0.7::5025::SOCKET"
      init = ["*RST", "CONF:TEMP"]
      readings = [
          {name = "temp", query = "MEAS:TEMP?", unit = "K"},
          {name = "heater", query = "HTR?", unit = "%", parse = "regex", regex = 'P=(\\S+)'},
          {name = "stage", query = "STAT?", parse = "csv[1]"},
      ]

  ``parse`` is ``float`` (default), ``int``, ``bool``, ``regex`` (one group,
  read as a float) or ``csv[N]`` (field N, 0-based, as a float).

Every type also takes ``read_termination``/``write_termination`` (default
``"\\n"``), ``timeout_ms`` (default 2000) and ``check_errors`` (default
``"always"``: ``SYST:ERR?`` is drained after every command and every reading, and
any entry raises a ``DriverError`` carrying the SCPI code and message;
``"commands"`` checks after commands only, ``"never"`` never).

Modules: :mod:`.parsing` (reply text to values), :mod:`.protocol` (transaction
functions), :mod:`.profiles` (readings per type), :mod:`.schemas` (config
schemas), :mod:`.driver` (one toolkit session class per type; both flavors generated),
:mod:`.plugin` (registration).
"""
