"""Step kinds, registered by name; the pipeline knows only this registry."""

from esb.loading.registry import Registry

STEP_KINDS = Registry("step kind", {
    "validate": "esb.steps.validate:ValidateStep",
    "json_to_xml": "esb.steps.convert:JsonToXmlStep",
    "xml_to_json": "esb.steps.convert:XmlToJsonStep",
    "map": "esb.steps.map:MapStep",
    "xslt": "esb.steps.xslt:XsltStep",
    "filter": "esb.steps.flow:FilterStep",
    "choice": "esb.steps.flow:ChoiceStep",
    "to": "esb.steps.to:ToStep",
    "publish": "esb.steps.publish:PublishStep",
    "set_headers": "esb.steps.headers:SetHeadersStep",
    "log": "esb.steps.log:LogStep",
    "function": "esb.steps.function:FunctionStep",
})
