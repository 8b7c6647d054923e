"""The dashboard's two languages: English as written in the templates and web/views.py,
and Spanish (the seed's users write Spanish).

A text is its own key: `t("Live calls")` is English as it stands and looked up in SPANISH
otherwise (a name such as an end reason has its English words in ENGLISH); `t("{n} calls", n=3)` formats after the lookup. A text missing from SPANISH
shows in English; tests/test_web_pages.py checks that every text the templates use has
its Spanish. The language is the `lang` cookie (the switch in the page's header), else the
browser's Accept-Language, else English.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = {"en": "English", "es": "Español"}
COOKIE = "callbridge_lang"

SPANISH = {
    # navigation and common words
    "Overview": "Resumen",
    "Live calls": "Llamadas en curso",
    "History": "Historial",
    "Agents": "Agentes",
    "Log in": "Entrar",
    "Log out": "Salir",
    "instance": "instancia",
    "admin": "administrador",
    "viewer": "observador",
    "User": "Usuario",
    "Password": "Contraseña",
    "There is no user yet. Create the first on the server:": "Aún no hay usuarios. Cree el primero en el servidor:",
    "Wrong user or password.": "Usuario o contraseña incorrectos.",
    "Too many failed logins: try again in {s} s.": "Demasiados intentos fallidos: vuelva a intentarlo en {s} s.",
    "The form expired: try again.": "El formulario caducó: vuelva a intentarlo.",
    "Not allowed": "No permitido",
    "Only an admin may do that.": "Solo un administrador puede hacer eso.",
    "Not found": "No encontrado",
    "There is no such call in the history.": "No hay tal llamada en el historial.",
    "The call history cannot be read: {e}": "No se puede leer el historial de llamadas: {e}",
    "yes": "sí",
    "no": "no",
    "any": "cualquiera",
    "None.": "Ninguna.",
    "most": "máximo",
    "total": "total",
    # live
    "No live calls.": "No hay llamadas en curso.",
    "Hang up": "Colgar",
    "Hang up this call?": "¿Colgar esta llamada?",
    "ending": "terminando",
    "Updated every second from this instance's supervisor.": "Se actualiza cada segundo desde el supervisor de esta instancia.",
    "Call": "Llamada",
    "Caller": "Llamante",
    "Number dialled": "Número marcado",
    "Agent": "Agente",
    "Age": "Duración",
    "State": "Estado",
    "Realtime": "Realtime",
    "Voice service": "Servicio de voz",
    "GPT-Live session": "Sesión de GPT-Live",
    "Recording": "Grabación",
    "Summary": "Resumen",
    "tokens": "tokens",
    "Only an admin may play it; each playback is in the audit log.": "Solo un administrador puede escucharla; cada escucha queda en el registro de auditoría.",
    "Each playback is in the audit log.": "Cada escucha queda en el registro de auditoría.",
    "The file is gone (RECORDINGS_RETENTION_DAYS, or removed).": "El archivo ya no está (RECORDINGS_RETENTION_DAYS, o se borró).",
    "left: the caller; right: the agent, as the caller heard it": "izquierda: quien llama; derecha: el agente, tal como se oyó",
    "complete": "completa",
    "stopped": "detenida (disco lleno)",
    "partial": "parcial (el proceso murió)",
    "Frames in/out": "Tramas entrada/salida",
    "Ring fill": "Llenado del búfer",
    "Underruns": "Vacíos de audio",
    "Barge-ins": "Interrupciones",
    "Tool calls": "Herramientas",
    "Key presses": "Teclas",
    "Transfer": "Transferencia",
    "CPU %": "CPU %",
    "Memory MB": "Memoria MB",
    # history
    "From": "Desde",
    "To": "Hasta",
    "End reason": "Motivo del fin",
    "Instance": "Instancia",
    "Said": "Dicho",
    "Search": "Buscar",
    "CSV": "CSV",
    "1 call": "1 llamada",
    "{n} calls": "{n} llamadas",
    "page {p} of {n}": "página {p} de {n}",
    "Started": "Inicio",
    "Duration": "Duración",
    "Cost": "Coste",
    "Newer": "Más recientes",
    "Older": "Más antiguas",
    # end reasons (shm_ring/header.py::EndReason)
    "caller_hangup": "colgó el llamante",
    "max_call_seconds": "duración máxima",
    "idle_timeout": "silencio prolongado",
    "operator_hangup": "colgada por un operador",
    "realtime_failed": "fallo de Realtime",
    "setup_failed": "fallo al establecer",
    "shutdown": "parada del servicio",
    "worker_crashed": "fallo del proceso",
    "supervisor_gone": "supervisor caído",
    "agent_hangup": "colgada por el agente",
    "transferred": "transferida",
    "none": "ninguno",
    # a call
    "Model": "Modelo",
    "Failure": "Fallo",
    "Record": "Registro",
    "rebuilt after the worker died: partial": "reconstruido tras caer el proceso: parcial",
    "Conversation": "Conversación",
    "No transcript (RECORDS_TRANSCRIPTS off, or nothing was said).": "Sin transcripción (RECORDS_TRANSCRIPTS desactivado, o no se dijo nada).",
    "caller": "llamante",
    "agent": "agente",
    "interrupted: the caller heard only the first part": "interrumpido: el llamante solo oyó la primera parte",
    "preamble": "preámbulo",
    "interrupted before its first word": "interrumpido antes de su primera palabra",
    "Timeline": "Cronología",
    "Webhooks": "Webhooks",
    "Event": "Evento",
    "Receiver": "Receptor",
    "Outcome": "Resultado",
    "Attempts": "Intentos",
    "delivered": "entregado",
    "given up": "abandonado",
    "At": "Momento",
    "What": "Qué",
    "Detail": "Detalle",
    "Audio": "Audio",
    "Usage and cost": "Consumo y coste",
    "set-up: worker started": "preparación: proceso iniciado",
    "set-up: forked": "preparación: proceso creado",
    "set-up: answered": "preparación: contestada",
    "set-up: realtime open": "preparación: Realtime abierto",
    "set-up: external media": "preparación: medio externo",
    "set-up: bridge created": "preparación: puente creado",
    "set-up: bridged": "preparación: en puente",
    "fallback": "desvío de respaldo",
    "transfer dialled": "transferencia marcada",
    "tool call": "llamada a herramienta",
    "barge in": "interrupción del llamante",
    "transfer failed": "transferencia fallida",
    "tool limit": "límite de herramientas",
    "ended": "terminada",
    "frames in": "tramas recibidas",
    "frames out": "tramas enviadas",
    "underruns": "vacíos de audio",
    "barge-ins": "interrupciones",
    "rejected packets": "paquetes rechazados",
    "reconnects": "reconexiones",
    "bridge retries": "reintentos de puente",
    "input audio tokens": "tokens de audio de entrada",
    "input text tokens": "tokens de texto de entrada",
    "cached input tokens": "tokens de entrada en caché",
    "output audio tokens": "tokens de audio de salida",
    "output text tokens": "tokens de texto de salida",
    "transcription": "transcripción",
    "cost estimate": "coste estimado",
    # overview
    "Service": "Servicio",
    "ARI": "ARI",
    "version": "versión",
    "up for": "en marcha desde hace",
    "live calls": "llamadas en curso",
    "calls taken": "llamadas atendidas",
    "Realtime errors, last hour": "errores de Realtime, última hora",
    "worker crashes, last hour": "fallos de proceso, última hora",
    "records waiting": "registros pendientes",
    "records lost": "registros perdidos",
    "media threads": "hilos de audio",
    "webhook events waiting": "eventos de webhook pendientes",
    "model shutdown dates": "fechas de retirada de modelos",
    "the supervisor": "el supervisor",
    "not running": "no está en marcha",
    "Calls per hour, last 24 hours": "Llamadas por hora, últimas 24 horas",
    "Calls per day, last 14 days": "Llamadas por día, últimos 14 días",
    "Minutes per day, last 14 days": "Minutos por día, últimos 14 días",
    "Cost per day, last 14 days": "Coste por día, últimos 14 días",
    "End reasons, last 14 days": "Motivos de fin, últimos 14 días",
    "Per agent, last 14 days": "Por agente, últimos 14 días",
    "Calls": "Llamadas",
    "Minutes": "Minutos",
    "Recent alerts": "Alertas recientes",
    "Alert": "Alerta",
    "Delivered": "Entregada",
    # agents
    "Answered now by": "Atiende ahora",
    "Why": "Por qué",
    "Hours": "Horario",
    "Budget a day": "Presupuesto diario",
    "Spent today": "Gastado hoy",
    "What `callbridge agents` says": "Lo que dice `callbridge agents`",
    "always": "siempre",
    "no agent": "ningún agente",
    # account
    "Your account": "Su cuenta",
    "Change your password": "Cambie su contraseña",
    "Current password": "Contraseña actual",
    "New password (10 characters or more)": "Contraseña nueva (10 caracteres o más)",
    "The new password again": "La contraseña nueva otra vez",
    "Change": "Cambiar",
    "Your password is changed; other sessions of yours have ended.": "Su contraseña ha cambiado; sus otras sesiones han terminado.",
    "The current password is wrong.": "La contraseña actual es incorrecta.",
    "The two new passwords differ.": "Las dos contraseñas nuevas no coinciden.",
    "a password has at least 10 characters": "una contraseña tiene al menos 10 caracteres",
}

# Keys that are names rather than English (the end reasons of shm_ring/header.py::EndReason,
# as the records store them), in words.
ENGLISH = {
    "caller_hangup": "the caller hung up",
    "max_call_seconds": "longest call reached",
    "idle_timeout": "silence too long",
    "operator_hangup": "hung up by an operator",
    "realtime_failed": "Realtime failed",
    "setup_failed": "set-up failed",
    "shutdown": "service stopping",
    "worker_crashed": "worker crashed",
    "supervisor_gone": "supervisor gone",
    "agent_hangup": "the agent ended it",
    "transferred": "transferred",
    "none": "none",
}
CATALOGS = {"en": ENGLISH, "es": SPANISH}


def choose(cookie: str | None, accept_language: str) -> str:
    """The `lang` cookie when it names one of ours, else the browser's first language of
    ours by its q-value, else English."""
    if cookie in LANGUAGES:
        return cookie
    wanted = []
    for n, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        wanted.append((-q, n, tag.strip().lower().split("-")[0]))
    for _, _, tag in sorted(wanted):
        if tag in LANGUAGES:
            return tag
    return "en"


def translator(lang: str) -> Callable[..., str]:
    catalog = CATALOGS.get(lang, {})

    def t(text, **values) -> str:
        text = str(text)
        out = catalog.get(text, text)
        return out.format(**values) if values else out

    return t
